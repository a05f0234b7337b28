"""Documents attached as evidence to a deployment, a case, an obligation, a condition of approval or an incident."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, UniqueConstraint
from sqlmodel import Field, SQLModel

from .base import in_enum, utcnow

#: What a document may be attached to (``subject_type``); each belongs to one deployment.
DOCUMENT_SUBJECTS = ("deployment", "submission", "obligation_status", "approval_condition", "incident")


class Document(SQLModel, table=True):
    """One version of one attached file; append-only (triggers refuse UPDATE and DELETE): a new upload under the
    same subject, type and name is the next version, the earlier ones stay as they were."""

    __tablename__ = "document"
    __table_args__ = (
        in_enum("subject_type", list(DOCUMENT_SUBJECTS)),
        in_enum("storage", ["instance", "s3"]),
        UniqueConstraint("subject_type", "subject_id", "doc_type", "filename", "version",
                         name="uq_document_version"),
        CheckConstraint("version >= 1", name="version_positive"),
        CheckConstraint("size > 0", name="not_empty"),
        CheckConstraint("length(sha256) = 64", name="sha256_hex"),
        # A case's documents carry its id, so that the case (and its dossier) finds them with one index.
        CheckConstraint("subject_type != 'submission' OR submission_id = subject_id", name="submission_named"),
    )

    id: int | None = Field(default=None, primary_key=True)
    subject_type: str = Field(max_length=20)
    subject_id: int
    #: The deployment the subject belongs to (itself, or that of the case, obligation, condition, incident).
    deployment_id: int = Field(foreign_key="deployment.id", index=True)
    submission_id: int | None = Field(default=None, foreign_key="submission.id", index=True)
    #: A type from ``checklists/documents/required_documents.yaml``, or ``other``.
    doc_type: str = Field(max_length=40)
    #: The name it was uploaded under (no folders).
    filename: str = Field(max_length=255)
    #: Detected from the content, never from the name.
    media_type: str = Field(max_length=100)
    size: int
    sha256: str = Field(max_length=64, index=True)
    version: int = 1
    #: Which store holds the bytes, and their key there (content-addressed: the same bytes are stored once).
    storage: str = Field(default="instance", max_length=10)
    storage_key: str = Field(max_length=200)
    note: str = Field(default="", max_length=2000)
    uploaded_by_id: int = Field(foreign_key="user_account.id")
    created_at: datetime = Field(default_factory=utcnow)
