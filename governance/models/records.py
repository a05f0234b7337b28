"""Artefacts and reports: signed dossiers, incidents, notifications."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Column, String
from sqlmodel import Field, SQLModel

from ..domain import Gate, IncidentSource, Severity
from .base import in_enum, utcnow


class Dossier(SQLModel, table=True):
    """A signed PDF emitted at a gate; never overwritten (append-only, enforced by triggers)."""

    __tablename__ = "dossier"
    __table_args__ = (in_enum("gate", Gate),
                      CheckConstraint("submission_id IS NOT NULL OR deployment_id IS NOT NULL "
                                      "OR meeting_id IS NOT NULL", name="about_something"))

    id: int | None = Field(default=None, primary_key=True)
    submission_id: int | None = Field(default=None, foreign_key="submission.id", index=True)
    deployment_id: int | None = Field(default=None, foreign_key="deployment.id", index=True)
    #: The meeting whose minutes this is (gate "minutes"; no case of its own).
    meeting_id: int | None = Field(default=None, foreign_key="meeting.id", index=True)
    gate: str = Field(max_length=30)
    #: Path relative to the instance folder.
    path: str = Field(sa_column=Column(String(500), unique=True, nullable=False))
    sha256: str = Field(max_length=64, index=True)
    size: int = 0
    signer_fingerprint: str = Field(max_length=64)
    signer_subject: str = Field(default="", max_length=300)
    audit_run_id: int | None = Field(default=None, foreign_key="audit_run.id")
    #: The gate event this dossier documents (a gate event without a dossier is still to be emitted).
    event_seq: int | None = Field(default=None, index=True)
    page_count: int = 0
    #: The event-chain head hash printed in the document.
    chain_head: str = Field(default="", max_length=64)
    created_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    created_at: datetime = Field(default_factory=utcnow)


class Incident(SQLModel, table=True):
    __tablename__ = "incident"
    __table_args__ = (in_enum("severity", Severity),
                      in_enum("source", IncidentSource),
                      in_enum("status", ["open", "under_review", "closed"]))

    id: int | None = Field(default=None, primary_key=True)
    deployment_id: int = Field(foreign_key="deployment.id", index=True)
    model_version_id: int | None = Field(default=None, foreign_key="model_version.id")
    reporter_id: int | None = Field(default=None, foreign_key="user_account.id")
    source: str = Field(default="clinician", max_length=20)
    severity: str = Field(max_length=20)
    what_happened: str
    patient_harmed: bool = False
    #: A de-identified example of the model's input and output.
    deidentified_example: str = ""
    occurred_at: datetime | None = None
    reported_at: datetime = Field(default_factory=utcnow)
    status: str = Field(default="open", max_length=20)
    #: Device deployments: the national adverse-event report is an obligation; its number is kept here.
    adverse_event_required: bool = False
    adverse_event_reference: str = Field(default="", max_length=200)


class Notification(SQLModel, table=True):
    """In-app notification (and the record of its e-mail); ``dedupe_key`` makes each reminder go out once."""

    __tablename__ = "notification"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user_account.id", index=True)
    kind: str = Field(max_length=40)
    subject: str = Field(max_length=300)
    body: str = ""
    link: str = Field(default="", max_length=300)
    dedupe_key: str | None = Field(default=None, sa_column=Column(String(200), unique=True, nullable=True))
    created_at: datetime = Field(default_factory=utcnow)
    read_at: datetime | None = None
    emailed_at: datetime | None = None
