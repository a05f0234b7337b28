"""Attaching documents as evidence: checked (type from the content, size, the name agreeing with the content),
stored by content (sha256), recorded append-only as the next version of its name, and written as an event.

A document is attached to a deployment, a case, an obligation's status, a condition of approval or an incident;
it always belongs to one deployment, and a case's documents also carry the case.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from .. import eventlog
from ..config import Settings
from ..documents.detect import DocumentRefused, detect
from ..documents.required import load_document_types
from ..documents.storage import read_verified, storage_for
from ..domain import N_
from ..errors import GovernanceError, NotPermitted, Reason
from ..inputs import CONTROL_CHARACTERS
from ..models import ApprovalCondition, Deployment, Document, Incident, ObligationStatus, Submission, User, utcnow
from ..permissions import may_attach_document

#: The model each subject type names.
SUBJECT_MODELS: dict[str, type] = {"deployment": Deployment, "submission": Submission,
                                   "obligation_status": ObligationStatus, "approval_condition": ApprovalCondition,
                                   "incident": Incident}
_SUBJECT_TYPES = {model: name for name, model in SUBJECT_MODELS.items()}


@dataclass(frozen=True)
class Subject:
    """What a document is attached to, with the deployment (and case) it belongs to."""

    type: str
    id: int
    deployment: Deployment
    submission: Submission | None = None
    incident: Incident | None = None


def subject_of(session: Session, record: Any) -> Subject:
    """The :class:`Subject` of a deployment, case, obligation status, condition of approval or incident."""
    kind = _SUBJECT_TYPES.get(type(record))
    if kind is None:
        raise GovernanceError(f"documents are not attached to a {type(record).__name__}")
    if isinstance(record, Deployment):
        return Subject(kind, record.id, record)
    deployment = session.get(Deployment, record.deployment_id)
    return Subject(kind, record.id, deployment, submission=record if isinstance(record, Submission) else None,
                   incident=record if isinstance(record, Incident) else None)


def find_subject(session: Session, subject_type: str, subject_id: int) -> Subject:
    model = SUBJECT_MODELS.get(subject_type)
    record = session.get(model, subject_id) if model is not None else None
    if record is None:
        raise GovernanceError(f"no {subject_type} {subject_id}")
    return subject_of(session, record)


def clean_filename(filename: str) -> str:
    """The name without folders (a browser may send a full path), NFC-normalised; refused when it is empty, holds
    a control character or is longer than 255 characters."""
    name = PurePosixPath(unicodedata.normalize("NFC", filename or "").replace("\\", "/")).name.strip()
    if not name or name in {".", ".."}:
        raise DocumentRefused(filename or "(no name)", Reason(N_("the file has no name")))
    if CONTROL_CHARACTERS.search(name) or "\x00" in name or "\x7f" in name:
        raise DocumentRefused(name.encode("unicode_escape").decode("ascii"),
                              Reason(N_("the name holds a control character")))
    if len(name) > 255:
        raise DocumentRefused(name[:60] + "…", Reason(N_("the name is longer than 255 characters")))
    return name


def attach_document(session: Session, settings: Settings, subject: Any, *, doc_type: str, filename: str,
                    data: bytes, actor: User, note: str = "") -> Document:
    """Check and store ``data`` as the next version of ``filename`` under ``subject`` and ``doc_type``, and write
    the event ``document_attached`` (flushed; the caller commits). Raises :class:`NotPermitted` for an actor who
    may not attach to the subject, :class:`DocumentRefused` for a file that is not accepted."""
    if not isinstance(subject, Subject):
        subject = subject_of(session, subject)
    if not may_attach_document(session, actor, subject.deployment, submission=subject.submission,
                               incident=subject.incident):
        raise NotPermitted("only the deployment's owner, the case's submitter, the incident's reporter or the IRB "
                           "office, the chair and the committees' members attach documents")
    types = load_document_types(settings.checklists_dir)
    if doc_type not in types.ids:
        raise GovernanceError(f"unknown document type '{doc_type}' (one of: {', '.join(types.ids)})")
    name = clean_filename(filename)
    kind = detect(name, data, settings.document_max_bytes)
    note = note.strip()
    if len(note) > 2000:
        raise GovernanceError("the note is longer than 2000 characters")
    digest = hashlib.sha256(data).hexdigest()
    latest = session.execute(select(func.max(Document.version)).where(
        Document.subject_type == subject.type, Document.subject_id == subject.id, Document.doc_type == doc_type,
        Document.filename == name)).scalar()
    storage = storage_for(settings)
    key = storage.put(digest, data, kind.media_type)
    document = Document(subject_type=subject.type, subject_id=subject.id, deployment_id=subject.deployment.id,
                        submission_id=subject.submission.id if subject.submission else None, doc_type=doc_type,
                        filename=name, media_type=kind.media_type, size=len(data), sha256=digest,
                        version=(latest or 0) + 1, storage=storage.name, storage_key=key, note=note,
                        uploaded_by_id=actor.id, created_at=utcnow())
    session.add(document)
    session.flush()
    eventlog.append(session, "document_attached", actor=actor, deployment_id=subject.deployment.id,
                    submission_id=document.submission_id,
                    payload={"document": document.id, "subject_type": subject.type, "subject_id": subject.id,
                             "doc_type": doc_type, "filename": name, "version": document.version, "sha256": digest,
                             "size": document.size, "media_type": kind.media_type})
    return document


def document_bytes(settings: Settings, document: Document) -> bytes:
    """The stored bytes of ``document``, checked against its recorded sha256."""
    return read_verified(settings, document.storage, document.storage_key, document.sha256)


def documents_of(session: Session, subject: Subject) -> list[Document]:
    """The documents attached to ``subject`` itself, every version, by type, name and version."""
    return list(session.execute(select(Document).where(
        Document.subject_type == subject.type, Document.subject_id == subject.id)
        .order_by(Document.doc_type, Document.filename, Document.version)).scalars())


def deployment_documents(session: Session, deployment: Deployment) -> list[Document]:
    """Every document of the deployment (its own, its cases', obligations', conditions' and incidents'), newest
    first."""
    return list(session.execute(select(Document).where(Document.deployment_id == deployment.id)
                                .order_by(Document.id.desc())).scalars())
