"""Conditions of an approval, tracked: one row per condition the chair wrote, with an owner (the deployment's
owner), a due date and whether it blocks; the owner shows it met with evidence, the chair may waive it with a
reason; a blocking condition still open at its due date suspends the deployment (cause ``condition_unmet``) and
the chair can reinstate it only once no blocking condition is overdue. Every change is an event."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlmodel import Session

from .. import eventlog
from ..domain import ConditionStatus, Role
from ..errors import GovernanceError, NotPermitted
from ..models import ApprovalCondition, Decision, Deployment, User
from ..permissions import roles_of

#: Without a date from the chair, conditions are due this long after the decision.
DEFAULT_DUE = timedelta(days=90)
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)、]|[（(]?\d+[)）])\s*")


def split_conditions(text: str) -> list[str]:
    """The conditions a decision's text lists: one per line (bullets and numbering removed); the line that
    :func:`record_decision` appends about open obligations is not a condition of its own."""
    out = []
    for line in text.splitlines():
        line = _BULLET.sub("", line).strip()
        if line and not line.startswith("Open obligations to be satisfied before clinical use"):
            out.append(line[:2000])
    return out


def record_conditions(session: Session, decision: Decision, deployment: Deployment, *, due: date | None,
                      blocking: bool, now: datetime) -> list[ApprovalCondition]:
    """The decision's conditions as tracked rows (flushed); the decision's event carries their ids."""
    due = due or (now + DEFAULT_DUE).date()
    if due <= now.date():
        raise GovernanceError("the conditions' due date must lie in the future")
    rows = [ApprovalCondition(decision_id=decision.id, deployment_id=deployment.id, number=number, text=text,
                              owner_id=deployment.owner_id, due_date=due, blocking=blocking, created_at=now)
            for number, text in enumerate(split_conditions(decision.conditions), start=1)]
    session.add_all(rows)
    session.flush()
    return rows


def conditions_of(session: Session, deployment: Deployment) -> list[ApprovalCondition]:
    return list(session.execute(select(ApprovalCondition).where(ApprovalCondition.deployment_id == deployment.id)
                                .order_by(ApprovalCondition.id.desc())).scalars())


def _close(session: Session, condition: ApprovalCondition, status: ConditionStatus, text: str, *, actor: User,
           now: datetime, event: str) -> None:
    if condition.status != ConditionStatus.OPEN:
        raise GovernanceError(f"condition {condition.number} is already {condition.status}")
    if len(text.strip()) < 10:
        raise GovernanceError("say what shows it (at least 10 characters): a report, a document reference, a "
                              "measurement" if status == ConditionStatus.MET else
                              "give the reason for waiving it (at least 10 characters)")
    condition.status, condition.evidence = status.value, text.strip()[:4000]
    condition.closed_by_id, condition.closed_at = actor.id, now
    session.flush()
    eventlog.append(session, event, actor=actor, deployment_id=condition.deployment_id, occurred_at=now,
                    payload={"condition": condition.id, "decision": condition.decision_id, "number": condition.number,
                             "blocking": condition.blocking, "due_date": condition.due_date.isoformat(),
                             "evidence" if status == ConditionStatus.MET else "reason": condition.evidence})


def meet_condition(session: Session, condition: ApprovalCondition, evidence: str, *, actor: User,
                   now: datetime) -> None:
    """The owner (or the chair) records the evidence that a condition is met."""
    if actor.id != condition.owner_id and Role.IRB_CHAIR not in roles_of(session, actor):
        raise NotPermitted("only the condition's owner or the chair records that it is met")
    _close(session, condition, ConditionStatus.MET, evidence, actor=actor, now=now, event="condition_met")


def waive_condition(session: Session, condition: ApprovalCondition, reason: str, *, actor: User,
                    now: datetime) -> None:
    """The chair lifts a condition, with the reason on the record."""
    if Role.IRB_CHAIR not in roles_of(session, actor):
        raise NotPermitted("only the chair waives a condition of approval")
    _close(session, condition, ConditionStatus.WAIVED, reason, actor=actor, now=now, event="condition_waived")
