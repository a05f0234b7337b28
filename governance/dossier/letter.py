"""What a decision letter says, as plain values: the decision, to the submitter, on the institution's letterhead.

The user account keeps no language preference, so the letter is bilingual (English and Chinese), like the dossier.
It is rendered from ``reports/letter.html``, signed and stored like a dossier (gate ``letter``), and embeds the
decision record it states as ``decision.json``.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from .. import obligations
from ..config import Settings
from ..models import Decision, Deployment, Event, ModelVersion, Submission, User, utcnow
from .context import _iso
from .evidence import json_bytes

TEMPLATE = "letter.html"
#: Outcomes a letter is written for (a deferral is not a decision the submitter must act on).
LETTER_OUTCOMES = ("approved", "approved_with_conditions", "revisions_required", "disapproved")
OUTCOME_TITLES = {
    "approved": ("Approval", "批准"),
    "approved_with_conditions": ("Approval with conditions", "附条件批准"),
    "revisions_required": ("Revisions required", "修改后再审"),
    "disapproved": ("Disapproval", "不予批准"),
    "deferred": ("Deferral", "暂缓决定"),
}


def _points(text: str) -> list[str]:
    """A decision's conditions or reasons as the points of a list: one per non-empty line (bullets stripped)."""
    points = [line.strip().lstrip("-*•·").strip() for line in (text or "").splitlines()]
    return [point for point in points if point]


def decision_of(session: Session, submission: Submission, event_seq: int | None) -> Decision:
    """The decision the gate event recorded (its payload names it); else the case's latest decision."""
    if event_seq is not None:
        event = session.execute(select(Event).where(Event.seq == event_seq)).scalar_one_or_none()
        decision_id = (event.payload or {}).get("decision") if event is not None else None
        if decision_id:
            found = session.get(Decision, decision_id)
            if found is not None and found.submission_id == submission.id:
                return found
    found = session.execute(select(Decision).where(Decision.submission_id == submission.id)
                            .order_by(Decision.id.desc()).limit(1)).scalar_one_or_none()
    if found is None:
        raise ValueError(f"submission {submission.id} has no decision to write a letter about")
    return found


def build(session: Session, settings: Settings, submission: Submission, *, event_seq: int | None = None,
          chain: dict[str, Any]) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The letter's template context and its attachments (name -> bytes)."""
    decision = decision_of(session, submission, event_seq)
    deployment = session.get(Deployment, submission.deployment_id)
    version = session.get(ModelVersion, decision.model_version_id)
    submitter = session.get(User, submission.submitter_id)
    decided_by = session.get(User, decision.decided_by_id) if decision.decided_by_id else None
    approved = decision.outcome in {"approved", "approved_with_conditions"}
    open_obligations = [{"id": o["id"], "title": o.get("title", ""), "title_zh": o.get("title_zh", ""),
                         "blocking": bool(o.get("blocking")), "due": o.get("due") or o.get("due_date")}
                        for o in obligations.with_status(session, submission) if o["status"] == "open"]
    record = {"submission": submission.id, "decision": decision.id, "round": decision.round,
              "outcome": decision.outcome, "conditions": decision.conditions, "reason": decision.reason,
              "decided_at": _iso(decision.decided_at), "model_version": version.version_label,
              "weights_digest": version.weights_digest, "event_seq": event_seq,
              "continuing_review_due": deployment.continuing_review_due.isoformat()
              if approved and deployment.continuing_review_due else None}
    attachments = {"decision.json": json_bytes(record)}
    context = {
        "institution": {"en": settings.institution_name, "zh": settings.institution_name_zh},
        "letterhead": {"en": _points(settings.letterhead), "zh": _points(settings.letterhead_zh)},
        "gate": "letter", "gate_title": ("Decision letter", "审查决定通知书"),
        "generated_at": _iso(utcnow()), "outcome": decision.outcome,
        "outcome_title": OUTCOME_TITLES.get(decision.outcome, (decision.outcome, decision.outcome)),
        "demo": bool(settings.demo_mode),
        "reference": f"IRB-{submission.id}-R{decision.round}-D{decision.id}",
        "recipient": {"name": submitter.name if submitter else "", "name_zh": submitter.name_zh if submitter else "",
                      "email": submitter.email if submitter else ""},
        "submission": {"id": submission.id, "title": submission.title, "kind": submission.kind,
                       "pathway": submission.pathway, "round": decision.round,
                       "submitted_at": _iso(submission.submitted_at)},
        "deployment": {"id": deployment.id, "name": deployment.name},
        "version": {"label": version.version_label, "weights_digest": version.weights_digest},
        "decision": {**record, "conditions_list": _points(decision.conditions), "reason_list": _points(decision.reason),
                     "decided_by": decided_by.name if decided_by else "the committee",
                     "meeting": decision.meeting_id},
        "obligations": open_obligations,
        "chain": chain,
        "evidence": [{"name": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
                     for name, data in sorted(attachments.items())],
    }
    return context, attachments
