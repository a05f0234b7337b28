"""Read-only questions about a case, shared by guards, effects, pages and dossiers."""

from __future__ import annotations

import functools
from datetime import date
from collections import Counter
from dataclasses import dataclass
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import func, or_, select
from sqlmodel import Session

from .checklists import Checklist, checklist_for
from .committees import CommitteeRules, threshold_met
from .config import Settings
from .documents.required import Requirement, load_document_types, requirements
from .domain import N_, OPEN_STATES, ConditionStatus, Pathway, SubmissionKind, SubmissionState, VoteMeaning
from .errors import Reason
from .models import (AgendaItem, ApprovalCondition, Assignment, AuditRun, ChecklistDraft, ChecklistResponse,
                     Classification, ConflictDeclaration, Decision, Deployment, Document, Event, Meeting,
                     MeetingAttendance, ModelVersion, Submission, User, Vote)
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
    """The member's standing on the case: their latest declaration row (their own, or the chair's correction)."""
    return session.execute(select(ConflictDeclaration).where(ConflictDeclaration.submission_id == submission.id,
                                                             ConflictDeclaration.user_id == user.id)
                           .order_by(ConflictDeclaration.id.desc()).limit(1)).scalars().first()


def declarations(session: Session, submission: Submission) -> list[ConflictDeclaration]:
    """Every declaration row of the case, oldest first: the members' own and the chair's corrections."""
    return list(session.execute(select(ConflictDeclaration).where(ConflictDeclaration.submission_id == submission.id)
                                .order_by(ConflictDeclaration.id)).scalars())


@_asked_once
def conflicted_user_ids(session: Session, submission: Submission) -> set[int]:
    """Members whose latest declaration on the case is a conflict (a correction supersedes what was declared)."""
    latest = (select(func.max(ConflictDeclaration.id))
              .where(ConflictDeclaration.submission_id == submission.id)
              .group_by(ConflictDeclaration.user_id))
    return set(session.execute(select(ConflictDeclaration.user_id).where(
        ConflictDeclaration.id.in_(latest), ConflictDeclaration.has_conflict.is_(True))).scalars())


@_asked_once
def votes_this_round(session: Session, submission: Submission) -> list[Vote]:
    return list(session.execute(select(Vote).where(Vote.submission_id == submission.id,
                                                   Vote.round == submission.round).order_by(Vote.id)).scalars())


def case_descriptor(session: Session, submission: Submission) -> dict[str, Any]:
    """The descriptor a case is judged under: an amendment's proposed one, any other case's deployment's own."""
    if submission.proposed_descriptor is not None:
        return submission.proposed_descriptor
    return session.get(Deployment, submission.deployment_id).descriptor


def has_approved_scope(deployment: Deployment) -> bool:
    """Whether the committee approved a scope for the deployment (it has an approved version): from then on its
    descriptor changes only through an approved amendment."""
    return deployment.approved_version_id is not None


def is_amendment(submission: Submission) -> bool:
    """A change to the approved scope of a deployment (its descriptor), not to its model."""
    return submission.proposed_descriptor is not None


def open_amendment(session: Session, deployment: Deployment) -> Submission | None:
    """The deployment's amendment still in review, if any (there is at most one at a time)."""
    return session.execute(select(Submission).where(
        Submission.deployment_id == deployment.id, Submission.proposed_descriptor.is_not(None),
        Submission.state.in_([s.value for s in OPEN_STATES])).order_by(Submission.id.desc()).limit(1)).scalars().first()


def amendment_baseline(session: Session, submission: Submission) -> dict[str, Any]:
    """The approved descriptor an amendment proposes to replace, as its ``amendment_proposed`` event recorded it
    (the deployment's descriptor changes once the amendment is approved; the comparison must not)."""
    recorded = session.execute(select(Event.payload).where(
        Event.submission_id == submission.id, Event.name == "amendment_proposed").order_by(Event.seq).limit(1)).scalar()
    if recorded and "approved_descriptor" in recorded:
        return recorded["approved_descriptor"]
    return session.get(Deployment, submission.deployment_id).descriptor


def approved_descriptor(session: Session, version: ModelVersion) -> dict[str, Any]:
    """The descriptor the committee approved for ``version``: its latest approved amendment's, else the one it was
    submitted under (empty for a version recorded before versions kept their descriptor)."""
    amended = session.execute(select(Submission.proposed_descriptor).where(
        Submission.model_version_id == version.id, Submission.proposed_descriptor.is_not(None),
        Submission.state.in_(["approved", "approved_with_conditions"])).order_by(Submission.id.desc())
                              .limit(1)).scalar()
    return amended or version.descriptor or {}


def case_facts(session: Session, submission: Submission) -> dict[str, Any]:
    """The descriptor plus the classification and case facts that checklist conditions may name."""
    facts: dict[str, Any] = dict(case_descriptor(session, submission) or {})
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


def case_documents(session: Session, submission: Submission) -> list[Document]:
    """What a case's reviewers weigh: the case's own documents and its deployment's (those attached to the
    deployment, its obligations, conditions and incidents; not other cases'), by subject, type, name, version."""
    return list(session.execute(select(Document).where(
        Document.deployment_id == submission.deployment_id,
        or_(Document.submission_id.is_(None), Document.submission_id == submission.id))
        .order_by(Document.subject_type.desc(), Document.doc_type, Document.filename, Document.version)).scalars())


def required_documents(session: Session, settings: Settings, submission: Submission,
                       documents: list[Document] | None = None) -> list[Requirement]:
    """The document types the case must carry (by its kind and facts), each with the document that fulfils it:
    one of that type among :func:`case_documents` (``documents`` when the caller has them)."""
    types = load_document_types(settings.checklists_dir)
    facts = case_facts(session, submission)
    if not types.required(submission.kind, facts):
        return []
    documents = case_documents(session, submission) if documents is None else documents
    return requirements(types, submission.kind, facts, documents)


def checklist_of(session: Session, submission: Submission, settings: Settings) -> Checklist:
    return checklist_for(settings.checklists_dir, submission.pathway or Pathway.FULL_BOARD.value, submission.kind)


def checklist_answers(session: Session, submission: Submission, reviewer: User) -> dict[str, ChecklistResponse]:
    rows = session.execute(select(ChecklistResponse).where(
        ChecklistResponse.submission_id == submission.id, ChecklistResponse.round == submission.round,
        ChecklistResponse.reviewer_id == reviewer.id)).scalars()
    return {row.item_id: row for row in rows}


def checklist_draft(session: Session, submission: Submission, reviewer: User) -> ChecklistDraft | None:
    """The reviewer's checklist saved as a draft in this round (no answer until it is submitted), if any."""
    return session.execute(select(ChecklistDraft).where(
        ChecklistDraft.submission_id == submission.id, ChecklistDraft.round == submission.round,
        ChecklistDraft.reviewer_id == reviewer.id)).scalars().first()


def missing_checklist_items(session: Session, submission: Submission, reviewer: User,
                            settings: Settings, *, also_answered: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """The required items that apply to the case and that ``reviewer`` has not answered (this round), counting
    ``also_answered`` (answers being submitted) as answered."""
    checklist = checklist_of(session, submission, settings)
    answered = set(checklist_answers(session, submission, reviewer)) | set(also_answered)
    facts = case_facts(session, submission)
    return [item.id for item in checklist.applicable_items(facts) if item.required and item.id not in answered]


def owes_checklist(session: Session, submission: Submission, member: User) -> bool:
    """Whether ``member`` must answer the checklist before voting: the primary and secondary reviewers (the members
    the chair assigned to the case) do; the other members present at a full-board meeting vote without it."""
    return is_assigned(session, submission, member)


def _user_map(session: Session, ids: set[int]) -> dict[int, User]:
    if not ids:
        return {}
    return {u.id: u for u in session.execute(select(User).where(User.id.in_(ids))).scalars()}


@dataclass(frozen=True)
class QuorumRecord:
    """Who counts toward the quorum of the meeting that considers a full-board case, and whether it is met."""

    rule: dict[str, Any]
    meeting_id: int | None
    meeting: dict[str, Any] | None = None
    present: tuple[str, ...] = ()
    eligible_members: tuple[User, ...] = ()
    recused_members: tuple[User, ...] = ()
    non_scientists: int = 0
    external: int = 0
    shortfalls: tuple[str, ...] = ()

    @property
    def met(self) -> bool:
        return not self.shortfalls

    def as_record(self) -> dict[str, Any]:
        """The record kept with a decision and printed in its dossier (names, not user rows)."""
        record: dict[str, Any] = {"rule": self.rule, "meeting_id": self.meeting_id, "met": self.met,
                                  "present": list(self.present), "eligible": [u.name for u in self.eligible_members],
                                  "recused": [u.name for u in self.recused_members],
                                  "non_scientists": self.non_scientists, "external": self.external,
                                  "shortfalls": list(self.shortfalls)}
        if self.meeting is not None:
            record["meeting"] = self.meeting
        return record


@dataclass(frozen=True)
class Voters:
    """Who may vote on a case now (and, on the full board, the quorum record of its meeting)."""

    pathway: str | None
    eligible: tuple[User, ...]
    recused: tuple[User, ...]
    quorum: QuorumRecord | None


@dataclass(frozen=True)
class Tally:
    """This round's votes by eligible voters, counted by meaning."""

    pathway: str | None
    round: int
    eligible: int
    voted: int
    counts: dict[str, int]
    quorum: QuorumRecord | None
    recused: tuple[str, ...]
    threshold: str

    def support(self, meanings: set[str]) -> int:
        return sum(self.counts.get(m, 0) for m in meanings)

    def as_record(self) -> dict[str, Any]:
        """The tally kept with a decision (the quorum is kept beside it)."""
        return {"pathway": self.pathway, "round": self.round, "eligible": self.eligible, "voted": self.voted,
                "counts": dict(self.counts), "recused": list(self.recused), "threshold": self.threshold}


def eligible_voters(session: Session, submission: Submission, rules: CommitteeRules) -> Voters:
    """Who may vote on the case now, and (full board) the quorum record of its meeting."""
    conflicted = conflicted_user_ids(session, submission)
    eligible_roles = rules.eligible_roles(submission.pathway or Pathway.FULL_BOARD.value)
    if submission.pathway == Pathway.AI_SUBCOMMITTEE.value:
        reviewers = _user_map(session, {a.reviewer_id for a in assignments(session, submission)})
        eligible = tuple(u for u in reviewers.values()
                         if u.active and u.id != submission.submitter_id and u.id not in conflicted
                         and roles_of(session, u) & eligible_roles)
        return Voters(submission.pathway, eligible, tuple(u for u in reviewers.values() if u.id in conflicted), None)
    quorum = quorum_record(session, submission, rules)
    return Voters(submission.pathway, quorum.eligible_members, quorum.recused_members, quorum)


def agenda(session: Session, meeting: Meeting) -> list[AgendaItem]:
    """The meeting's agenda in the chair's order."""
    return list(session.execute(select(AgendaItem).where(AgendaItem.meeting_id == meeting.id)
                                .order_by(AgendaItem.position, AgendaItem.id)).scalars())


def agenda_item(session: Session, submission: Submission) -> AgendaItem | None:
    """The agenda item of the case's current round (on whichever meeting it is)."""
    return session.execute(select(AgendaItem).where(AgendaItem.submission_id == submission.id,
                                                    AgendaItem.round == submission.round)).scalars().first()


def ready_for_board(session: Session) -> list[Submission]:
    """Full-board cases in review that no meeting considers yet: what the chair puts on an agenda."""
    return list(session.execute(select(Submission).where(
        Submission.state == SubmissionState.IN_REVIEW.value, Submission.pathway == Pathway.FULL_BOARD.value,
        Submission.meeting_id.is_(None)).order_by(Submission.submitted_at, Submission.id)).scalars())


def open_meetings(session: Session) -> list[Meeting]:
    """Meetings a case can still be put on (not closed), soonest first."""
    return list(session.execute(select(Meeting).where(Meeting.status != "closed")
                                .order_by(Meeting.scheduled_for, Meeting.id)).scalars())


def in_the_room(row: MeetingAttendance, item_id: int | None = None) -> bool:
    """Whether an attendee was there (for agenda item ``item_id``: not out of the room for it)."""
    return row.present and (item_id is None or item_id not in (row.absent_for_items or []))


def sits_as_member(session: Session, row: MeetingAttendance, item_id: int | None = None) -> bool:
    """Whether an attendee counts as a member of the meeting (for agenda item ``item_id``): a member does; an
    alternate does only while the member they sit for is not in the room as a member; advisers and guests never do."""
    if row.capacity == "member":
        return True
    if row.capacity != "alternate" or row.alternate_for_id is None:
        return False
    stood_in_for = session.execute(select(MeetingAttendance).where(
        MeetingAttendance.meeting_id == row.meeting_id, MeetingAttendance.user_id == row.alternate_for_id,
        MeetingAttendance.capacity == "member")).scalars().first()
    return stood_in_for is None or not in_the_room(stood_in_for, item_id)


def current_item_id(session: Session, submission: Submission) -> int | None:
    """The id of the agenda item under which the case's meeting considers it now (None: not on an agenda)."""
    item = agenda_item(session, submission)
    return item.id if item is not None and item.meeting_id == submission.meeting_id else None


def quorum_record(session: Session, submission: Submission, rules: CommitteeRules) -> QuorumRecord:
    rule = rules.full_board.quorum
    if submission.meeting_id is None:
        return QuorumRecord(rule=rule.model_dump(), meeting_id=None, shortfalls=(Reason(N_("the case is not on a meeting agenda")),))
    meeting = session.get(Meeting, submission.meeting_id)
    item_id = current_item_id(session, submission)
    rows = [row for row in session.execute(select(MeetingAttendance).where(
        MeetingAttendance.meeting_id == meeting.id, MeetingAttendance.present.is_(True))).scalars()
        if in_the_room(row, item_id)]
    users = _user_map(session, {r.user_id for r in rows})
    conflicted = conflicted_user_ids(session, submission)
    eligible_roles = rules.eligible_roles(Pathway.FULL_BOARD.value)
    present, eligible, recused = [], [], []
    non_scientists = external = 0
    for row in rows:
        user = users[row.user_id]
        present.append(user.name)
        if not sits_as_member(session, row, item_id) or not user.active or not (roles_of(session, user) & eligible_roles):
            continue
        if user.id in conflicted or user.id == submission.submitter_id:
            recused.append(user)
            continue
        eligible.append(user)
        non_scientists += 0 if user.is_scientist else 1
        external += 0 if user.is_affiliated else 1
    shortfalls = []
    if len(eligible) < rule.min_present:
        shortfalls.append(Reason(N_("%(count)s eligible members present, %(needed)s needed"), count=len(eligible),
                                 needed=rule.min_present))
    if non_scientists < rule.min_non_scientists:
        shortfalls.append(Reason(N_("%(count)s non-scientist members present, %(needed)s needed"),
                                 count=non_scientists, needed=rule.min_non_scientists))
    if external < rule.min_external:
        shortfalls.append(Reason(N_("%(count)s external members present, %(needed)s needed"), count=external,
                                 needed=rule.min_external))
    return QuorumRecord(rule=rule.model_dump(), meeting_id=meeting.id,
                        meeting={"id": meeting.id, "title": meeting.title,
                                 "scheduled_for": meeting.scheduled_for.isoformat(timespec="minutes")},
                        present=tuple(present), eligible_members=tuple(eligible), recused_members=tuple(recused),
                        non_scientists=non_scientists, external=external, shortfalls=tuple(shortfalls))


@_asked_once
def tally(session: Session, submission: Submission, rules: CommitteeRules) -> Tally:
    """Votes of this round by eligible voters, counted by meaning."""
    voters = eligible_voters(session, submission, rules)
    eligible_ids = {u.id for u in voters.eligible}
    votes = [v for v in votes_this_round(session, submission) if v.voter_id in eligible_ids]
    counts = Counter(v.meaning for v in votes)
    return Tally(pathway=submission.pathway, round=submission.round, eligible=len(eligible_ids), voted=len(votes),
                 counts={meaning.value: counts.get(meaning.value, 0) for meaning in VoteMeaning},
                 quorum=voters.quorum, recused=tuple(u.name for u in voters.recused),
                 threshold=rules.full_board.approval_threshold)


def outcome_met(tally_: Tally, meanings: set[str]) -> tuple[int, bool]:
    """How many eligible members present voted for one of ``meanings``, and whether the threshold is met."""
    votes_for = tally_.support(meanings)
    return votes_for, threshold_met(votes_for, tally_.eligible, tally_.threshold)


def open_continuing_review(session: Session, deployment: Deployment) -> Submission | None:
    """The deployment's continuing-review case that is still open, if any."""
    return session.execute(select(Submission).where(
        Submission.deployment_id == deployment.id, Submission.kind == SubmissionKind.CONTINUING,
        Submission.state.in_([s.value for s in OPEN_STATES])).order_by(Submission.id.desc()).limit(1)).scalars().first()


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


def incident_reviews(session: Session, deployment: Deployment) -> list[tuple[Submission, str | None]]:
    """The incident cases of ``deployment`` in the order they were opened, each with its latest decision's outcome
    (``None`` while undecided; a withdrawn case does not exist: incident reviews cannot be withdrawn)."""
    cases = session.execute(select(Submission).where(Submission.deployment_id == deployment.id,
                                                     Submission.kind == SubmissionKind.INCIDENT)
                            .order_by(Submission.id)).scalars().all()
    outcomes: dict[int, str] = {}
    if cases:
        for submission_id, outcome in session.execute(
                select(Decision.submission_id, Decision.outcome)
                .where(Decision.submission_id.in_([case.id for case in cases])).order_by(Decision.id)):
            outcomes[submission_id] = outcome
    return [(case, outcomes.get(case.id)) for case in cases]


def rules_impact_since_classified(session: Session, ruleset) -> list[dict[str, Any]]:
    """Deployments whose outcome changes under ``ruleset`` (the deployed rules) against their latest classifier
    result, when that result was computed under other rules (its stored ``rules_digest``): the stored result is
    the old side, the stored descriptor and case facts are reclassified for the new one. Overrides are skipped: a
    chair's correction is not the rules' doing. Rows: ``{"deployment", "classified_at", "changes", "rules"}``."""
    from .classification.descriptor import descriptor_from_dict
    from .classification.engine import RuleConflict, classify
    from .classification.impact import compare
    from .datafiles import DataFileError

    latest = (select(Submission.deployment_id, func.max(Classification.id).label("classification_id"))
              .join(Classification, Classification.submission_id == Submission.id)
              .where(Classification.is_override.is_(False)).group_by(Submission.deployment_id).subquery())
    rows = session.execute(select(Deployment, Classification)
                           .join(latest, latest.c.deployment_id == Deployment.id)
                           .join(Classification, Classification.id == latest.c.classification_id)
                           .order_by(Deployment.id)).all()
    impacted = []
    for deployment, classification in rows:
        stored = classification.result
        if stored.get("rules_digest") == ruleset.digest:
            continue
        try:
            fresh = classify(descriptor_from_dict(deployment.descriptor, f"deployment {deployment.id}"), ruleset,
                             stored.get("case"))
            impact = compare(stored, fresh)
        except (DataFileError, RuleConflict, KeyError):
            continue  # a descriptor or a stored result of an older schema: `govern rules impact` reports these
        if impact is not None:
            impacted.append({"deployment": deployment, "classified_at": classification.created_at, **impact})
    return impacted


def open_conditions(session: Session, deployment: Deployment) -> list[ApprovalCondition]:
    """The conditions of the deployment's approvals still open, soonest due first."""
    return list(session.execute(select(ApprovalCondition).where(
        ApprovalCondition.deployment_id == deployment.id, ApprovalCondition.status == ConditionStatus.OPEN)
        .order_by(ApprovalCondition.due_date, ApprovalCondition.id)).scalars())


def overdue_blocking(session: Session, deployment: Deployment, today: date) -> list[ApprovalCondition]:
    return [c for c in open_conditions(session, deployment) if c.blocking and c.due_date <= today]
