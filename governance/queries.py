"""Read-only questions about a case, shared by guards, effects, pages and dossiers."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from .checklists import Checklist, checklist_for
from .committees import CommitteeRules, threshold_met
from .config import Settings
from .domain import Pathway, VoteMeaning
from .models import (Assignment, AuditRun, ChecklistResponse, Classification, ConflictDeclaration, Deployment, Event,
                     Meeting, MeetingAttendance, ModelVersion, Submission, User, Vote)
from .permissions import roles_of

_MEMO = "governance.queries.memo"


@contextmanager
def memoized(session: Session) -> Iterator[None]:
    """Within the block, each question marked ``@_asked_once`` is asked of the database once per case (and per
    further argument): a page that checks every guard of every action asks the same things many times. Nothing
    may change the case or its records inside the block."""
    if _MEMO in session.info:  # an enclosing block owns the memo
        yield
        return
    session.info[_MEMO] = {}
    try:
        yield
    finally:
        session.info.pop(_MEMO, None)


def _asked_once(question: Callable) -> Callable:
    @functools.wraps(question)
    def ask(session: Session, submission: Submission, *args: Any) -> Any:
        memo = session.info.get(_MEMO)
        if memo is None:
            return question(session, submission, *args)
        key = (question.__name__, submission.id, getattr(submission, "round", None),
               *(("user", a.id) if isinstance(a, User) else id(a) for a in args))
        if key not in memo:
            memo[key] = question(session, submission, *args)
        return memo[key]
    return ask


@_asked_once
def latest_classification(session: Session, submission: Submission) -> Classification | None:
    return session.execute(select(Classification).where(Classification.submission_id == submission.id)
                           .order_by(Classification.id.desc()).limit(1)).scalars().first()


@_asked_once
def latest_audit(session: Session, submission: Submission) -> AuditRun | None:
    """The case's newest gate run, re-read from the database: audits advance in their own sessions (a worker
    thread, inline after commit, Celery), so a copy this session loaded earlier may be stale."""
    return session.execute(select(AuditRun).where(AuditRun.submission_id == submission.id, AuditRun.purpose == "gate")
                           .order_by(AuditRun.id.desc()).limit(1)
                           .execution_options(populate_existing=True)).scalars().first()


def audit_passed(session: Session, submission: Submission) -> bool:
    run = latest_audit(session, submission)
    return run is not None and run.status == "completed" and run.verdict == "pass"


@_asked_once
def assignments(session: Session, submission: Submission) -> list[Assignment]:
    return list(session.execute(select(Assignment).where(Assignment.submission_id == submission.id)
                                .order_by(Assignment.id)).scalars())


@_asked_once
def is_assigned(session: Session, submission: Submission, user: User) -> bool:
    return session.execute(select(Assignment.id).where(Assignment.submission_id == submission.id,
                                                       Assignment.reviewer_id == user.id)).first() is not None


@_asked_once
def declaration(session: Session, submission: Submission, user: User) -> ConflictDeclaration | None:
    return session.execute(select(ConflictDeclaration).where(ConflictDeclaration.submission_id == submission.id,
                                                             ConflictDeclaration.user_id == user.id)).scalars().first()


@_asked_once
def conflicted_user_ids(session: Session, submission: Submission) -> set[int]:
    return set(session.execute(select(ConflictDeclaration.user_id).where(
        ConflictDeclaration.submission_id == submission.id, ConflictDeclaration.has_conflict.is_(True))).scalars())


@_asked_once
def votes_this_round(session: Session, submission: Submission) -> list[Vote]:
    return list(session.execute(select(Vote).where(Vote.submission_id == submission.id,
                                                   Vote.round == submission.round).order_by(Vote.id)).scalars())


def case_facts(session: Session, submission: Submission) -> dict[str, Any]:
    """The descriptor plus the classification and case facts that checklist conditions may name."""
    deployment = session.get(Deployment, submission.deployment_id)
    facts: dict[str, Any] = dict(deployment.descriptor or {})
    classification = latest_classification(session, submission)
    result = classification.result if classification else {}
    facts.update({
        "nmpa_status": classification.nmpa_status if classification else None,
        "review_as_class": (classification.review_as_class or "none") if classification else None,
        "prohibited": bool(classification and classification.prohibited),
        "expert_reexamination": bool(classification and classification.expert_reexamination),
        "eu_ai_act_high_risk": bool(result.get("eu_ai_act", {}).get("high_risk")),
        "pathway": submission.pathway,
        "kind": submission.kind,
        "materiality": submission.materiality or "none",
    })
    return facts


def checklist_of(session: Session, submission: Submission, settings: Settings) -> Checklist:
    return checklist_for(settings.checklists_dir, submission.pathway or Pathway.FULL_BOARD.value, submission.kind)


def checklist_answers(session: Session, submission: Submission, reviewer: User) -> dict[str, ChecklistResponse]:
    rows = session.execute(select(ChecklistResponse).where(
        ChecklistResponse.submission_id == submission.id, ChecklistResponse.round == submission.round,
        ChecklistResponse.reviewer_id == reviewer.id)).scalars()
    return {row.item_id: row for row in rows}


def missing_checklist_items(session: Session, submission: Submission, reviewer: User,
                            settings: Settings) -> list[str]:
    checklist = checklist_of(session, submission, settings)
    answered = checklist_answers(session, submission, reviewer)
    facts = case_facts(session, submission)
    return [item.id for item in checklist.applicable_items(facts) if item.required and item.id not in answered]


def _user_map(session: Session, ids: set[int]) -> dict[int, User]:
    if not ids:
        return {}
    return {u.id: u for u in session.execute(select(User).where(User.id.in_(ids))).scalars()}


def eligible_voters(session: Session, submission: Submission, rules: CommitteeRules) -> dict[str, Any]:
    """Who may vote on the case now, and (full board) the quorum record of its meeting."""
    conflicted = conflicted_user_ids(session, submission)
    eligible_roles = rules.eligible_roles(submission.pathway or Pathway.FULL_BOARD.value)
    if submission.pathway == Pathway.AI_SUBCOMMITTEE.value:
        reviewers = _user_map(session, {a.reviewer_id for a in assignments(session, submission)})
        eligible = [u for u in reviewers.values()
                    if u.active and u.id != submission.submitter_id and u.id not in conflicted
                    and roles_of(session, u) & eligible_roles]
        return {"pathway": submission.pathway, "eligible": eligible,
                "recused": [u for u in reviewers.values() if u.id in conflicted], "quorum": None}
    quorum = quorum_record(session, submission, rules)
    return {"pathway": submission.pathway, "eligible": quorum.pop("_eligible_users"),
            "recused": quorum.pop("_recused_users"), "quorum": quorum}


def quorum_record(session: Session, submission: Submission, rules: CommitteeRules) -> dict[str, Any]:
    rule = rules.full_board.quorum
    record: dict[str, Any] = {"rule": rule.model_dump(), "meeting_id": submission.meeting_id, "met": False,
                              "present": [], "eligible": [], "recused": [], "non_scientists": 0, "external": 0,
                              "shortfalls": [], "_eligible_users": [], "_recused_users": []}
    if submission.meeting_id is None:
        record["shortfalls"].append("the case is not on a meeting agenda")
        return record
    meeting = session.get(Meeting, submission.meeting_id)
    record["meeting"] = {"id": meeting.id, "title": meeting.title,
                         "scheduled_for": meeting.scheduled_for.isoformat(timespec="minutes")}
    rows = session.execute(select(MeetingAttendance).where(MeetingAttendance.meeting_id == meeting.id,
                                                           MeetingAttendance.present.is_(True))).scalars().all()
    users = _user_map(session, {r.user_id for r in rows})
    conflicted = conflicted_user_ids(session, submission)
    eligible_roles = rules.eligible_roles(Pathway.FULL_BOARD.value)
    for row in rows:
        user = users[row.user_id]
        record["present"].append(user.name)
        if row.capacity != "member" or not user.active or not (roles_of(session, user) & eligible_roles):
            continue
        if user.id in conflicted or user.id == submission.submitter_id:
            record["recused"].append(user.name)
            record["_recused_users"].append(user)
            continue
        record["eligible"].append(user.name)
        record["_eligible_users"].append(user)
        record["non_scientists"] += 0 if user.is_scientist else 1
        record["external"] += 0 if user.is_affiliated else 1
    count = len(record["eligible"])
    if count < rule.min_present:
        record["shortfalls"].append(f"{count} eligible members present, {rule.min_present} needed")
    if record["non_scientists"] < rule.min_non_scientists:
        record["shortfalls"].append(f"{record['non_scientists']} non-scientist members present, "
                                    f"{rule.min_non_scientists} needed")
    if record["external"] < rule.min_external:
        record["shortfalls"].append(f"{record['external']} external members present, {rule.min_external} needed")
    record["met"] = not record["shortfalls"]
    return record


@_asked_once
def tally(session: Session, submission: Submission, rules: CommitteeRules) -> dict[str, Any]:
    """Votes of this round by eligible voters, counted by meaning."""
    voters = eligible_voters(session, submission, rules)
    eligible_ids = {u.id for u in voters["eligible"]}
    votes = [v for v in votes_this_round(session, submission) if v.voter_id in eligible_ids]
    counts = Counter(v.meaning for v in votes)
    return {
        "pathway": submission.pathway,
        "round": submission.round,
        "eligible": len(eligible_ids),
        "voted": len(votes),
        "counts": {meaning.value: counts.get(meaning.value, 0) for meaning in VoteMeaning},
        "quorum": voters["quorum"],
        "recused": [u.name for u in voters["recused"]],
        "threshold": rules.full_board.approval_threshold,
    }


def outcome_support(counts: dict[str, int], eligible: int, threshold: str, meanings: set[str]) -> tuple[int, bool]:
    votes_for = sum(counts.get(m, 0) for m in meanings)
    return votes_for, threshold_met(votes_for, eligible, threshold)


def approved_version(session: Session, deployment: Deployment) -> ModelVersion | None:
    if deployment.approved_version_id is None:
        return None
    return session.get(ModelVersion, deployment.approved_version_id)


def latest_suspension(session: Session, deployment: Deployment) -> Event | None:
    """The event that suspended the deployment most recently (its payload says why)."""
    return session.execute(select(Event).where(Event.deployment_id == deployment.id, Event.name == "suspend",
                                               Event.submission_id.is_(None))
                           .order_by(Event.seq.desc()).limit(1)).scalars().first()


def suspension_cause(session: Session, deployment: Deployment) -> str | None:
    if deployment.status != "suspended":
        return None
    event = latest_suspension(session, deployment)
    return (event.payload or {}).get("cause") if event else None
