"""Review cases and their classifications."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from ..domain import ROUTED_STATES, Materiality, Pathway, SubmissionKind, SubmissionState
from .base import in_enum, utcnow

_routed = ", ".join(f"'{s.value}'" for s in sorted(ROUTED_STATES))


class Submission(SQLModel, table=True):
    """A review case: one model version of one deployment, at one kind of gate."""

    __tablename__ = "submission"
    __table_args__ = (
        in_enum("state", SubmissionState),
        in_enum("kind", SubmissionKind),
        in_enum("pathway", Pathway, nullable=True),
        in_enum("materiality", Materiality, nullable=True),
        # A routed case always knows its pathway.
        CheckConstraint(f"state NOT IN ({_routed}) OR pathway IS NOT NULL", name="routed_has_pathway"),
        # Only change control has a materiality.
        CheckConstraint("kind = 'change' OR materiality IS NULL", name="materiality_only_for_changes"),
        CheckConstraint("lock_version >= 1", name="lock_version_positive"),
        # An amendment is a change case, and names the digest of what it proposes.
        CheckConstraint("proposed_descriptor IS NULL OR (kind = 'change' AND proposed_descriptor_sha256 IS NOT NULL)",
                        name="amendment_is_a_change"),
        # Cases by state, newest first (the dashboard's groups, lists filtered by state) and counts by state.
        Index("ix_submission_state_updated_at", "state", "updated_at", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=20, index=True)
    deployment_id: int = Field(foreign_key="deployment.id", index=True)
    model_version_id: int = Field(foreign_key="model_version.id", index=True)
    #: For changes: the approved version this one is compared with (the audit baseline).
    baseline_version_id: int | None = Field(default=None, foreign_key="model_version.id")
    title: str = Field(max_length=300)
    summary: str = ""
    state: str = Field(default=SubmissionState.DRAFT.value, max_length=40)
    pathway: str | None = Field(default=None, max_length=20)
    materiality: str | None = Field(default=None, max_length=20)
    submitter_id: int = Field(foreign_key="user_account.id", index=True)
    meeting_id: int | None = Field(default=None, foreign_key="meeting.id")
    incident_id: int | None = Field(default=None, foreign_key="incident.id")
    #: An amendment (a change of kind ``change`` to the approved version's scope): the descriptor proposed in place of
    #: the approved one. The deployment keeps its approved descriptor until this case is approved.
    proposed_descriptor: dict[str, Any] | None = Field(default=None,
                                                       sa_column=Column(JSON(none_as_null=True), nullable=True))
    #: sha256 of the proposed descriptor's canonical JSON (what the committee's decision names).
    proposed_descriptor_sha256: str | None = Field(default=None, max_length=64)
    #: Review round: a resubmission or reconsideration starts a new round (votes are per round).
    round: int = 1
    #: Optimistic lock: every transition bumps it; a stale writer gets a conflict, never a lost update.
    lock_version: int = 1
    review_due: date | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow, index=True)
    submitted_at: datetime | None = None
    decided_at: datetime | None = None


class Classification(SQLModel, table=True):
    """The classifier's result for a case, or the chair's override of it (the original is kept)."""

    __tablename__ = "classification"
    __table_args__ = (
        CheckConstraint("NOT is_override OR length(justification) > 0", name="override_justified"),
        CheckConstraint("NOT is_override OR overrides_id IS NOT NULL", name="override_names_original"),
        in_enum("pathway", Pathway),
    )

    id: int | None = Field(default=None, primary_key=True)
    submission_id: int = Field(foreign_key="submission.id", index=True)
    #: The full classifier output (China / US / EU, obligations, rule trail).
    result: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    rules_version: str = Field(max_length=100)
    input_sha256: str = Field(max_length=64)
    nmpa_status: str = Field(max_length=20)
    review_as_class: str | None = Field(default=None, max_length=5)
    pathway: str = Field(max_length=20)
    prohibited: bool = False
    expert_reexamination: bool = False
    is_override: bool = False
    overrides_id: int | None = Field(default=None, foreign_key="classification.id")
    justification: str = ""
    created_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    created_at: datetime = Field(default_factory=utcnow)
    confirmed_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    confirmed_at: datetime | None = None


class ObligationStatus(SQLModel, table=True):
    """Where a deployment stands on one obligation the classifier named."""

    __tablename__ = "obligation_status"
    __table_args__ = (
        UniqueConstraint("deployment_id", "obligation_id", name="uq_obligation_status_deployment_obligation"),
        in_enum("status", ["open", "satisfied", "not_applicable"]),
        CheckConstraint("status != 'satisfied' OR length(evidence) > 0", name="satisfied_has_evidence"),
    )

    id: int | None = Field(default=None, primary_key=True)
    deployment_id: int = Field(foreign_key="deployment.id", index=True)
    obligation_id: str = Field(max_length=80)
    status: str = Field(default="open", max_length=20)
    #: What proves it (a filing number, a document name); required when satisfied.
    evidence: str = ""
    #: An external reference number (NMPA registration, CAC filing, adverse-event report).
    reference: str = Field(default="", max_length=200)
    updated_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    updated_at: datetime = Field(default_factory=utcnow)
