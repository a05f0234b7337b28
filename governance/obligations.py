"""Obligations a classification names, and where a deployment stands on each."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from . import queries
from .models import Deployment, ObligationStatus, Submission, User, utcnow

STATUSES = ("open", "satisfied", "not_applicable")


def statuses(session: Session, deployment_id: int) -> dict[str, ObligationStatus]:
    rows = session.execute(select(ObligationStatus).where(ObligationStatus.deployment_id == deployment_id)).scalars()
    return {row.obligation_id: row for row in rows}


def sync_from_classification(session: Session, deployment: Deployment, result: dict[str, Any]) -> list[str]:
    """Open a status row for every obligation the classification names that the deployment lacks."""
    known = statuses(session, deployment.id)
    opened = []
    for obligation in result.get("obligations", []):
        if obligation["id"] not in known:
            session.add(ObligationStatus(deployment_id=deployment.id, obligation_id=obligation["id"], status="open"))
            opened.append(obligation["id"])
    session.flush()
    return opened


def with_status(session: Session, submission: Submission) -> list[dict[str, Any]]:
    """The latest classification's obligations, each with the deployment's status, evidence and reference."""
    classification = queries.latest_classification(session, submission)
    if classification is None:
        return []
    known = statuses(session, submission.deployment_id)
    rows = []
    for obligation in classification.result.get("obligations", []):
        status = known.get(obligation["id"])
        rows.append({**obligation, "status": status.status if status else "open",
                     "evidence": status.evidence if status else "", "reference": status.reference if status else "",
                     "updated_at": status.updated_at.isoformat(timespec="seconds") if status else None})
    return rows


def open_blocking_obligations(session: Session, submission: Submission) -> list[str]:
    return [o["id"] for o in with_status(session, submission) if o["blocking"] and o["status"] == "open"]


def set_status(session: Session, deployment: Deployment, obligation_id: str, status: str, *, evidence: str,
               reference: str, actor: User) -> ObligationStatus:
    """Record an obligation's status (the caller writes the event: see operations.obligations)."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}")
    if status == "satisfied" and not evidence.strip():
        raise ValueError("a satisfied obligation needs its evidence (a document, filing or registration number)")
    row = statuses(session, deployment.id).get(obligation_id)
    if row is None:
        row = ObligationStatus(deployment_id=deployment.id, obligation_id=obligation_id)
        session.add(row)
    row.status, row.evidence, row.reference = status, evidence.strip(), reference.strip()
    row.updated_by_id, row.updated_at = actor.id, utcnow()
    session.flush()
    return row
