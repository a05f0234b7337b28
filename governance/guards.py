"""The named guards of the workflow. Each returns None to allow, or a sentence saying why it refuses: a
:class:`~governance.errors.Reason`, English where it is recorded (event log, CLI, API) and translated where a page
shows it (its template is marked with ``N_`` for the catalogue)."""

from __future__ import annotations

import hashlib
import re

from sqlalchemy import select

from . import queries, signing
from .classification.descriptor import descriptor_from_dict
from .committees import load_committee_rules
from .datafiles import DataFileError
from .domain import (N_, POSITIVE_VOTES, ChecklistAnswer, Pathway, Role, SubmissionKind, SuspensionCause,
                     VoteMeaning)
from .errors import Reason, joined
from .models import AuditRun, Deployment, Incident, Meeting, MeetingAttendance, ModelVersion, User
from .monitoring.integrity import check_served_model
from .obligations import open_blocking_obligations
from .permissions import can_see, roles_of
from .schemas import NOTE_MAX
from .security import verify_password
from .workflow import DECISION_OUTCOMES
from .workflow.registry import Context, Registry

#: The guards the transition tables name (the engine reads this registry).
guard = Registry("guard")

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _rules(ctx: Context):
    return load_committee_rules(ctx.settings.regulations_dir)


def _words(value: str) -> Reason:
    """A stored value (a pathway, a role) as its words, which a page translates like the ``words`` filter does."""
    return Reason(value.replace("_", " "))


def _either(values) -> Reason:
    """Values as "a or b", each as words a page translates."""
    return joined([_words(v) for v in sorted(values)], " / ")


# --- who is acting -------------------------------------------------------------------------------

@guard("actor_is_case_submitter")
def actor_is_case_submitter(ctx: Context) -> str | None:
    if ctx.actor is None or ctx.actor.id != ctx.submission.submitter_id:
        return Reason(N_("only the person who submitted this case may do this"))
    return None


@guard("not_own_case")
def not_own_case(ctx: Context) -> str | None:
    if ctx.actor is not None and ctx.actor.id == ctx.submission.submitter_id:
        return Reason(N_("nobody may review, vote on or decide their own submission"))
    return None


@guard("actor_is_chair_or_case_submitter")
def actor_is_chair_or_case_submitter(ctx: Context) -> str | None:
    if Role.IRB_CHAIR in ctx.roles and ctx.actor.id != ctx.submission.submitter_id:
        return None
    return actor_is_case_submitter(ctx)


@guard("actor_is_chair_or_assigned_reviewer")
def actor_is_chair_or_assigned_reviewer(ctx: Context) -> str | None:
    if Role.IRB_CHAIR in ctx.roles or queries.is_assigned(ctx.session, ctx.submission, ctx.actor):
        return None
    return Reason(N_("only the chair or a reviewer assigned to this case may escalate it"))


@guard("actor_can_see_case")
def actor_can_see_case(ctx: Context) -> str | None:
    if can_see(ctx.session, ctx.actor, ctx.submission):
        return None
    return Reason(N_("you are not a participant in this case"))


@guard("actor_takes_part_in_review")
def actor_takes_part_in_review(ctx: Context) -> str | None:
    if queries.is_assigned(ctx.session, ctx.submission, ctx.actor):
        return None
    if ctx.submission.pathway == Pathway.FULL_BOARD.value and \
            ctx.roles & _rules(ctx).eligible_roles(Pathway.FULL_BOARD.value):
        return None
    return Reason(N_("you are not assigned to this case (fast-track cases are reviewed by the members the chair "
                      "assigns)"))


# --- the case file -------------------------------------------------------------------------------

@guard("model_version_identified")
def model_version_identified(ctx: Context) -> str | None:
    version = ctx.session.get(ModelVersion, ctx.submission.model_version_id)
    no_digest = not _SHA256.match(version.weights_digest or "")
    no_endpoint = not (version.endpoint or version.served_model_id)
    label = version.version_label
    if no_digest and no_endpoint:
        return Reason(N_("model version '%(label)s' lacks the weights digest (sha256 over the model files) and the "
                         "serving endpoint or local path"), label=label)
    if no_digest:
        return Reason(N_("model version '%(label)s' lacks the weights digest (sha256 over the model files)"),
                      label=label)
    if no_endpoint:
        return Reason(N_("model version '%(label)s' lacks the serving endpoint or local path"), label=label)
    return None


@guard("descriptor_valid")
def descriptor_valid(ctx: Context) -> str | None:
    deployment = ctx.session.get(Deployment, ctx.submission.deployment_id)
    try:  # an amendment is judged by the descriptor it proposes
        descriptor_from_dict(queries.case_descriptor(ctx.session, ctx.submission),
                             f"deployment {deployment.id} descriptor")
    except DataFileError as exc:
        return Reason(N_("the deployment descriptor is not valid: %(problem)s (%(key)s)"), problem=exc.message,
                      key=exc.key or "descriptor")
    return None


@guard("auto_screen_eligible")
def auto_screen_eligible(ctx: Context) -> str | None:
    """Only a routine change is screened by the system: the institution allows it, the deployment is active with an
    approved version, and nothing the committee approved about its use has changed since that approval."""
    from .models import Event, Submission

    if not ctx.settings.auto_screen_changes:
        return Reason(N_("this institution screens every case by hand"))
    case = ctx.submission
    deployment = ctx.session.get(Deployment, case.deployment_id)
    if case.kind != SubmissionKind.CHANGE or deployment.approved_version_id is None or deployment.status != "active":
        return Reason(N_("only a change to an active, approved deployment is screened automatically"))
    if queries.is_amendment(case):
        return Reason(N_("an amendment of the approved scope is screened by the IRB office"))
    approval = ctx.session.execute(select(Submission.decided_at).where(
        Submission.model_version_id == deployment.approved_version_id,
        Submission.state.in_(["approved", "approved_with_conditions"])).order_by(Submission.id.desc())
                                   .limit(1)).scalar()
    edited = approval is None or ctx.session.execute(select(Event.seq).where(
        Event.deployment_id == deployment.id, Event.name == "descriptor_updated",
        Event.occurred_at > approval).limit(1)).first() is not None
    version = ctx.session.get(ModelVersion, case.model_version_id)
    if edited or (version.descriptor and version.descriptor != deployment.descriptor):
        return Reason(N_("the deployment's descriptor changed since its approval: the IRB office screens the case"))
    return None


@guard("classification_present")
def classification_present(ctx: Context) -> str | None:
    if queries.latest_classification(ctx.session, ctx.submission) is None:
        return Reason(N_("the case has no classification yet"))
    return None


@guard("materiality_known")
def materiality_known(ctx: Context) -> str | None:
    if ctx.submission.kind == "change" and not ctx.submission.materiality:
        return Reason(N_("a change submission needs its materiality (material, minor or depends on audit) assessed "
                         "first"))
    return None


@guard("justification_given", needs_data=True)
def justification_given(ctx: Context) -> str | None:
    text = (ctx.data.get("justification") or "").strip()
    if len(text) < 20:
        return Reason(N_("a written justification of at least %(count)s characters is required"), count=20)
    return None


@guard("not_prohibited")
def not_prohibited(ctx: Context) -> str | None:
    classification = queries.latest_classification(ctx.session, ctx.submission)
    if classification is not None and classification.prohibited:
        rules = [f"{r['rule_id']}: {r['source']}" for r in classification.result.get("rule_trail", [])
                 if r.get("sets", {}).get("prohibited")]
        return Reason(N_("this deployment can never be approved: it issues prescriptions without a physician or acts "
                         "in the physician's place (%(rules)s)"), rules="; ".join(rules) or "prohibition rule")
    return None


# --- the audit gate ------------------------------------------------------------------------------

def _gate_run(ctx: Context) -> AuditRun | None:
    run_id = ctx.data.get("audit_run") or ctx.payload.get("audit_run")
    if run_id:
        return ctx.session.get(AuditRun, run_id)
    return queries.latest_audit(ctx.session, ctx.submission)


@guard("audit_verdict_is_pass")
def audit_verdict_is_pass(ctx: Context) -> str | None:
    run = _gate_run(ctx)
    if run is None or run.status != "completed":
        return Reason(N_("the audit has not completed"))
    return None if run.verdict == "pass" else Reason(N_("the audit verdict is '%(verdict)s', not pass"),
                                                     verdict=run.verdict)


@guard("audit_verdict_is_not_pass")
def audit_verdict_is_not_pass(ctx: Context) -> str | None:
    run = _gate_run(ctx)
    if run is None or run.status not in {"completed", "failed"}:
        return Reason(N_("the audit has not finished"))
    return Reason(N_("the audit passed")) if run.verdict == "pass" else None


@guard("audit_passed")
def audit_passed(ctx: Context) -> str | None:
    if queries.audit_passed(ctx.session, ctx.submission):
        return None
    return Reason(N_("a failed or missing audit never leads to approval; the latest audit did not pass"))


@guard("audit_may_run_again")
def audit_may_run_again(ctx: Context) -> str | None:
    run = queries.latest_audit(ctx.session, ctx.submission)
    if run is not None and run.status == "completed":
        return Reason(N_("the first completed audit of this version decides (a new run would ask the same prompts): "
                         "revise the model and submit a new version, or escalate to the full board"))
    return None


@guard("audit_stopped")
def audit_stopped(ctx: Context) -> str | None:
    run = queries.latest_audit(ctx.session, ctx.submission)
    if run is None or run.status not in {"error", "cancelled", "failed"}:
        return Reason(N_("the audit has not stopped: only an audit that could not run or was cancelled is tried "
                         "again"))
    return None


@guard("no_pending_audit")
def no_pending_audit(ctx: Context) -> str | None:
    run = queries.latest_audit(ctx.session, ctx.submission)
    if run is not None and run.status in {"queued", "running"}:
        return Reason(N_("audit run %(run)s is still %(status)s"), run=run.id, status=_words(run.status))
    return None


@guard("vote_consistent_with_audit", needs_data=True)
def vote_consistent_with_audit(ctx: Context) -> str | None:
    if ctx.data.get("meaning") in POSITIVE_VOTES and not queries.audit_passed(ctx.session, ctx.submission):
        return Reason(N_("the audit did not pass: a vote to approve is not possible (vote to require revisions, "
                         "defer or disapprove)"))
    return None


# --- review --------------------------------------------------------------------------------------

@guard("pathway_is_full_board")
def pathway_is_full_board(ctx: Context) -> str | None:
    if ctx.submission.pathway != Pathway.FULL_BOARD.value:
        return Reason(N_("only the full board may do this; fast-track reviewers cannot disapprove (escalate "
                         "instead)"))
    return None


@guard("pathway_is_fast_track")
def pathway_is_fast_track(ctx: Context) -> str | None:
    if ctx.submission.pathway != Pathway.AI_SUBCOMMITTEE.value:
        return Reason(N_("the case is already before the full board"))
    return None


def _user_by_email(ctx: Context, email: str) -> User | None:
    """The account a form field names (reviewer, member), active or not."""
    return ctx.session.execute(select(User).where(User.email == email)).scalars().first()


@guard("reviewer_eligible", needs_data=True)
def reviewer_eligible(ctx: Context) -> str | None:
    email = ctx.data.get("reviewer") or ""
    reviewer = _user_by_email(ctx, email)
    if reviewer is None or not reviewer.active:
        return Reason(N_("no active user '%(email)s'"), email=email)
    if reviewer.id == ctx.submission.submitter_id:
        return Reason(N_("%(name)s submitted this case and cannot review it"), name=reviewer.name)
    eligible = _rules(ctx).eligible_roles(ctx.submission.pathway)
    if not (roles_of(ctx.session, reviewer) & eligible):
        return Reason(N_("%(name)s is not a member eligible for the %(pathway)s pathway (needs %(roles)s)"),
                      name=reviewer.name, pathway=_words(ctx.submission.pathway), roles=_either(eligible))
    declared = queries.declaration(ctx.session, ctx.submission, reviewer)
    if declared is not None and declared.has_conflict:
        return Reason(N_("%(name)s declared a conflict of interest on this case"), name=reviewer.name)
    if queries.is_assigned(ctx.session, ctx.submission, reviewer):
        return Reason(N_("%(name)s is already assigned"), name=reviewer.name)
    return None


@guard("conflict_not_yet_declared")
def conflict_not_yet_declared(ctx: Context) -> str | None:
    if queries.declaration(ctx.session, ctx.submission, ctx.actor) is not None:
        return Reason(N_("you have already declared your conflicts of interest on this case"))
    return None


@guard("conflict_statement_given", needs_data=True)
def conflict_statement_given(ctx: Context) -> str | None:
    """A declared conflict says what it is: the statement is what the dossier and the chair read."""
    if ctx.data.get("has_conflict") and not (ctx.data.get("statement") or "").strip():
        return Reason(N_("'statement' is required when you declare a conflict of interest: say what the conflict "
                         "is"))
    return None


def _reviews_case(ctx: Context, member: User) -> bool:
    """Whether ``member`` takes part in the review of the case (as :func:`actor_takes_part_in_review` asks)."""
    if queries.is_assigned(ctx.session, ctx.submission, member):
        return True
    return ctx.submission.pathway == Pathway.FULL_BOARD.value and \
        bool(roles_of(ctx.session, member) & _rules(ctx).eligible_roles(Pathway.FULL_BOARD.value))


@guard("declaration_correction_valid", needs_data=True)
def declaration_correction_valid(ctx: Context) -> str | None:
    """The chair's correction of a member's declaration: a member who reviews the case, a statement for a
    conflict, a change to what stands, and nobody clears their own recusal."""
    email = ctx.data.get("member") or ""
    member = _user_by_email(ctx, email)
    if member is None or not member.active:
        return Reason(N_("'member': no active user '%(email)s'"), email=email)
    if member.id == ctx.submission.submitter_id:
        return Reason(N_("%(name)s submitted this case: they take no part in its review"), name=member.name)
    current = queries.declaration(ctx.session, ctx.submission, member)
    if current is None and not _reviews_case(ctx, member):
        return Reason(N_("%(name)s does not take part in the review of this case"), name=member.name)
    has_conflict, statement = bool(ctx.data.get("has_conflict")), (ctx.data.get("statement") or "").strip()
    if has_conflict and not statement:
        return Reason(N_("'statement' is required when the correction records a conflict of interest: say what "
                         "it is"))
    if current is None and not has_conflict:
        return Reason(N_("%(name)s has not declared yet: they declare themselves, or the correction records a "
                         "conflict"), name=member.name)
    if member.id == ctx.actor.id and not has_conflict:
        return Reason(N_("nobody clears their own declaration: another chair records this correction"))
    if current is not None and current.has_conflict == has_conflict and current.statement == statement:
        return Reason(N_("this is what %(name)s's declaration already says"), name=member.name)
    return None


@guard("actor_declared_no_conflict")
def actor_declared_no_conflict(ctx: Context) -> str | None:
    declared = queries.declaration(ctx.session, ctx.submission, ctx.actor)
    if declared is None:
        return Reason(N_("declare your conflicts of interest first"))
    if declared.has_conflict:
        return Reason(N_("you declared a conflict of interest and are recused from this case"))
    return None


@guard("actor_not_recused")
def actor_not_recused(ctx: Context) -> str | None:
    """Recusal closes every door on the case: a member who declared a conflict of interest neither reviews, votes,
    comments, escalates, schedules, assigns nor decides it (no declaration yet is not a recusal)."""
    if ctx.actor is None:
        return None
    if ctx.actor.id in queries.conflicted_user_ids(ctx.session, ctx.submission):
        return Reason(N_("you declared a conflict of interest and are recused from this case"))
    return None


def _applicable_items(ctx: Context):
    checklist = queries.checklist_of(ctx.session, ctx.submission, ctx.settings)
    return checklist, {item.id: item for item in
                       checklist.applicable_items(queries.case_facts(ctx.session, ctx.submission))}


def _entry_problem(item_id: str, entry, item, *, draft: bool) -> Reason | None:
    """What is wrong with one checklist entry ``{answer, comment}``; a draft may leave the answer empty and a
    "no" without its comment for now."""
    if not isinstance(entry, dict) or set(entry) - {"answer", "comment"}:
        return Reason(N_("'%(item)s': expected {answer, comment}"), item=item_id)
    answer = entry.get("answer")
    if draft and answer in (None, ""):
        pass
    elif answer not in {a.value for a in ChecklistAnswer}:
        return Reason(N_("'%(item)s': answer must be yes, no or na"), item=item_id)
    elif answer == ChecklistAnswer.NOT_APPLICABLE and not item.allows_na:
        return Reason(N_("'%(item)s': this item cannot be answered 'not applicable'"), item=item_id)
    elif answer == ChecklistAnswer.NO and not draft and not str(entry.get("comment") or "").strip():
        return Reason(N_("'%(item)s': a 'no' needs a comment"), item=item_id)
    if len(str(entry.get("comment") or "").strip()) > NOTE_MAX:
        return Reason(N_("'%(item)s': the comment has more than %(count)s characters"), item=item_id,
                      count=NOTE_MAX)
    return None


def _answers_problem(ctx: Context, *, draft: bool) -> Reason | None:
    answers = ctx.data.get("answers")
    if not isinstance(answers, dict) or not answers:
        return Reason(N_("answers must map checklist item ids to {answer, comment}"))
    checklist, applicable = _applicable_items(ctx)
    for item_id, entry in answers.items():
        if item_id not in applicable:
            return Reason(N_("'%(item)s' is not an item of checklist '%(checklist)s' that applies to this case"),
                          item=item_id, checklist=checklist.id)
        problem = _entry_problem(item_id, entry, applicable[item_id], draft=draft)
        if problem is not None:
            return problem
    return None


@guard("checklist_answers_valid", needs_data=True)
def checklist_answers_valid(ctx: Context) -> str | None:
    return _answers_problem(ctx, draft=False)


@guard("checklist_answers_complete", needs_data=True)
def checklist_answers_complete(ctx: Context) -> str | None:
    """A submitted checklist answers every required item that applies (with the answers already submitted this
    round); a checklist half done is saved as a draft instead."""
    answers = ctx.data.get("answers") or {}
    missing = queries.missing_checklist_items(ctx.session, ctx.submission, ctx.actor, ctx.settings,
                                              also_answered=set(answers))
    if missing:
        return Reason(N_("the checklist is not complete: answer %(items)s, or save it as a draft"),
                      items=", ".join(missing))
    return None


@guard("checklist_draft_valid", needs_data=True)
def checklist_draft_valid(ctx: Context) -> str | None:
    """A draft names items of the checklist that applies; each answer is empty or one the item takes."""
    return _answers_problem(ctx, draft=True)


@guard("checklist_complete")
def checklist_complete(ctx: Context) -> str | None:
    """The primary and secondary reviewers (the members the chair assigned) answer the whole checklist before they
    vote; the other members present vote without it. A draft is no answer."""
    if not queries.owes_checklist(ctx.session, ctx.submission, ctx.actor):
        return None
    missing = queries.missing_checklist_items(ctx.session, ctx.submission, ctx.actor, ctx.settings)
    if missing:
        return Reason(N_("answer the required checklist items first: %(items)s"), items=", ".join(missing))
    return None


@guard("meeting_is_open", needs_data=True)
def meeting_is_open(ctx: Context) -> str | None:
    meeting = ctx.session.get(Meeting, ctx.data.get("meeting"))
    if meeting is None:
        return Reason(N_("no meeting %(meeting)s"), meeting=ctx.data.get("meeting"))
    if meeting.status == "closed":
        return Reason(N_("meeting %(meeting)s is closed"), meeting=meeting.id)
    return None


@guard("actor_may_vote")
def actor_may_vote(ctx: Context) -> str | None:
    submission = ctx.submission
    if submission.pathway == Pathway.AI_SUBCOMMITTEE.value:
        if not queries.is_assigned(ctx.session, submission, ctx.actor):
            return Reason(N_("only the reviewers assigned to this fast-track case vote on it"))
        if not (ctx.roles & _rules(ctx).eligible_roles(submission.pathway)):
            return Reason(N_("only AI sub-committee members vote on fast-track cases"))
        return None
    if not (ctx.roles & _rules(ctx).eligible_roles(Pathway.FULL_BOARD.value)):
        return Reason(N_("only full-board members vote on full-board cases"))
    if submission.meeting_id is None:
        return Reason(N_("the case is not on a meeting agenda yet: full-board votes are cast at a convened "
                         "meeting"))
    row = ctx.session.execute(select(MeetingAttendance).where(MeetingAttendance.meeting_id == submission.meeting_id,
                                                              MeetingAttendance.user_id == ctx.actor.id)).scalars().first()
    if row is None or not row.present:
        return Reason(N_("you are not recorded as present at the meeting that considers this case"))
    item_id = queries.current_item_id(ctx.session, submission)
    if not queries.in_the_room(row, item_id):
        return Reason(N_("you are recorded as out of the room for this agenda item"))
    if row.capacity == "alternate":
        if not queries.sits_as_member(ctx.session, row, item_id):
            return Reason(N_("you attend as an alternate and the member you sit for is present: an alternate votes "
                             "only in place of an absent member"))
        return None
    if row.capacity != "member":
        return Reason(N_("you attend as %(capacity)s: advisers and guests do not vote"),
                      capacity=_words(row.capacity))
    return None


@guard("on_an_open_agenda")
def on_an_open_agenda(ctx: Context) -> str | None:
    meeting = ctx.session.get(Meeting, ctx.submission.meeting_id) if ctx.submission.meeting_id else None
    if meeting is None:
        return Reason(N_("the case is not on a meeting agenda"))
    if meeting.status == "closed":
        return Reason(N_("meeting %(meeting)s is closed"), meeting=meeting.id)
    return None


@guard("no_votes_at_the_meeting")
def no_votes_at_the_meeting(ctx: Context) -> str | None:
    if any(v.meeting_id == ctx.submission.meeting_id for v in queries.votes_this_round(ctx.session, ctx.submission)):
        return Reason(N_("members have voted on this case at the meeting: it stays on the agenda"))
    return None


@guard("not_yet_voted")
def not_yet_voted(ctx: Context) -> str | None:
    if any(v.voter_id == ctx.actor.id for v in queries.votes_this_round(ctx.session, ctx.submission)):
        return Reason(N_("you have already voted in this round"))
    return None


@guard("signature_password_valid", needs_data=True)
def signature_password_valid(ctx: Context) -> str | None:
    """The signer's password, re-entered (21 CFR 11.200(a)). Each failure is an event once the refused vote is
    rolled back; after ``signature_max_failures`` of them the signing session (web session or API token) can no
    longer sign (11.300(d))."""
    session_ = signing.current(ctx.session)
    failed = signing.failures(ctx.session, ctx.actor, session_) if session_ is not None else 0
    on_deployment = isinstance(ctx.subject, Deployment)
    ids = {"event": ctx.transition.event, "submission_id": None if on_deployment else ctx.subject.id,
           "deployment_id": ctx.subject.id if on_deployment else ctx.subject.deployment_id}
    if session_ is not None and failed >= session_.max_failures:
        signing.record_after_rollback(ctx.session, signing.REFUSED_LOCKED, ctx.actor, signing=session_,
                                      attempt=failed + 1, **ids)
        return Reason(N_("signing is locked for this session after %(count)s wrong signature passwords: sign out "
                         "and sign in again to sign"), count=failed)
    if not signature_password_matches(ctx.session, ctx.actor, ctx.data.get("password") or ""):
        signing.record_after_rollback(ctx.session, signing.FAILED, ctx.actor, signing=session_, attempt=failed + 1,
                                      **ids)
        left = session_.max_failures - failed - 1 if session_ is not None else None
        if left is None:
            return Reason(N_("the password does not match: the electronic signature was not applied"))
        if left:
            return Reason(N_("the password does not match: the electronic signature was not applied (%(count)s "
                             "attempt(s) left in this session)"), count=left)
        return Reason(N_("the password does not match: the electronic signature was not applied; signing is now "
                         "locked for this session (sign out and sign in again)"))
    return None


def signature_password_matches(session, actor: User, password: str) -> bool:
    """Whether ``password`` is ``actor``'s, from the check :func:`preverify_signature` made before the case row
    was locked (argon2 takes a good part of a second), or checked now."""
    known = session.info.get(_PREVERIFIED)
    key = (actor.id, actor.password_hash, hashlib.sha256(password.encode()).hexdigest())
    if known is not None and known[0] == key:
        return known[1]
    return verify_password(actor.password_hash, password)


def preverify_signature(session, actor: User | None, data: dict | None) -> None:
    """Check a signature's password before the engine locks the case row, so reviewers signing at once wait for
    each other's database work only, not for each other's argon2 hashing."""
    session.info.pop(_PREVERIFIED, None)
    password = (data or {}).get("password")
    if actor is None or not isinstance(password, str) or not actor.password_hash:
        return
    key = (actor.id, actor.password_hash, hashlib.sha256(password.encode()).hexdigest())
    session.info[_PREVERIFIED] = (key, verify_password(actor.password_hash, password))


_PREVERIFIED = "governance.preverified_signature"


# --- the decision gate ---------------------------------------------------------------------------

@guard("decision_supported_by_votes")
def decision_supported_by_votes(ctx: Context) -> str | None:
    rules = _rules(ctx)
    outcome = DECISION_OUTCOMES[ctx.transition.event].value
    counts = queries.tally(ctx.session, ctx.submission, rules)
    if ctx.submission.pathway == Pathway.FULL_BOARD.value:
        quorum = counts.quorum
        if not quorum.met:
            return Reason(N_("no quorum: %(shortfalls)s"), shortfalls=joined(list(quorum.shortfalls)))
        if outcome == "deferred":
            return None
        meanings = {"approved": {VoteMeaning.APPROVE, VoteMeaning.APPROVE_WITH_CONDITIONS},
                    "approved_with_conditions": {VoteMeaning.APPROVE, VoteMeaning.APPROVE_WITH_CONDITIONS},
                    "revisions_required": {VoteMeaning.REQUIRE_REVISIONS},
                    "disapproved": {VoteMeaning.DISAPPROVE}}[outcome]
        votes_for, met = queries.outcome_met(counts, {m.value for m in meanings})
        if not met:
            return Reason(N_("%(votes)s of %(eligible)s eligible members present voted for '%(outcome)s'; the "
                             "%(rule)s rule is not met"), votes=votes_for, eligible=counts.eligible,
                          outcome=_words(outcome), rule=_words(rules.full_board.approval_threshold))
        return None
    # fast track: every assigned, non-conflicted reviewer has voted, and they agree
    eligible, voted = counts.eligible, counts.voted
    if eligible < rules.ai_subcommittee.min_reviewers:
        return Reason(N_("%(eligible)s eligible reviewers assigned; the fast track needs %(needed)s"),
                      eligible=eligible, needed=rules.ai_subcommittee.min_reviewers)
    if voted < eligible:
        return Reason(N_("%(voted)s of %(eligible)s assigned reviewers have voted"), voted=voted, eligible=eligible)
    c = counts.counts
    positive = c["approve"] + c["approve_with_conditions"]
    if outcome == "approved":
        return None if c["approve"] == eligible else Reason(N_("not every reviewer voted to approve without "
                                                               "conditions"))
    if outcome == "approved_with_conditions":
        return None if positive == eligible else Reason(N_("not every reviewer voted to approve"))
    if outcome == "revisions_required":
        return None if c["require_revisions"] else Reason(N_("no reviewer asked for revisions"))
    if outcome == "deferred":
        return None if c["defer"] else Reason(N_("no reviewer asked to defer"))
    return Reason(N_("the fast track cannot record this outcome"))


@guard("no_open_blocking_obligations")
def no_open_blocking_obligations(ctx: Context) -> str | None:
    open_ids = open_blocking_obligations(ctx.session, ctx.submission)
    if open_ids:
        return Reason(N_("blocking obligations are still open: %(obligations)s (satisfy them with evidence, or "
                         "approve with conditions)"), obligations=", ".join(open_ids))
    return None


# --- incidents and monitoring --------------------------------------------------------------------

@guard("case_opened_by_the_system")
def case_opened_by_the_system(ctx: Context) -> str | None:
    if ctx.submission.kind != SubmissionKind.INCIDENT:
        return Reason(N_("only incident cases are filed by the system; the submitter submits the others"))
    return None


@guard("case_may_be_withdrawn")
def case_may_be_withdrawn(ctx: Context) -> str | None:
    if ctx.submission.kind == SubmissionKind.INCIDENT:
        return Reason(N_("an incident review cannot be withdrawn; the chair closes it with a decision"))
    return None


@guard("adverse_event_reported")
def adverse_event_reported(ctx: Context) -> str | None:
    if ctx.submission.kind != SubmissionKind.INCIDENT or not ctx.submission.incident_id:
        return None
    incident = ctx.session.get(Incident, ctx.submission.incident_id)
    if incident.adverse_event_required and not incident.adverse_event_reference:
        return Reason(N_("incident #%(incident)s on a medical-device deployment must be reported to the national "
                         "adverse-event monitoring system: record the report number on the incident first"),
                      incident=incident.id)
    return None


@guard("suspension_cause_allowed", needs_data=True)
def suspension_cause_allowed(ctx: Context) -> str | None:
    cause = ctx.data.get("cause")
    if ctx.actor is not None and cause not in (None, SuspensionCause.CHAIR.value):
        return Reason(N_("'%(cause)s' suspensions are made by the system; the chair suspends with cause 'chair'"),
                      cause=cause)
    if ctx.actor is None and cause in (None, SuspensionCause.CHAIR.value):
        return Reason(N_("an automatic suspension must name its cause"))
    return None


@guard("continuing_review_not_overdue")
def continuing_review_not_overdue(ctx: Context) -> str | None:
    due = ctx.deployment.continuing_review_due
    if due is not None and ctx.now.date() >= due:
        return Reason(N_("the continuing review was due on %(date)s: the deployment comes back when a continuing "
                         "review is approved, not by reinstatement"), date=due.isoformat())
    return None


@guard("blocking_conditions_settled")
def blocking_conditions_settled(ctx: Context) -> str | None:
    """A deployment suspended for an unmet condition comes back only once no blocking condition is overdue."""
    if queries.suspension_cause(ctx.session, ctx.deployment) != SuspensionCause.CONDITION_UNMET:
        return None
    overdue = queries.overdue_blocking(ctx.session, ctx.deployment, ctx.now.date())
    if overdue:
        return Reason(N_("blocking conditions of the approval are still open: %(numbers)s; record what shows them met "
                         "(or waive them) first"), numbers=", ".join(str(c.number) for c in overdue))
    return None


@guard("incident_review_decided")
def incident_review_decided(ctx: Context) -> str | None:
    """A deployment suspended for an incident comes back only after the incident review decided on continued use:
    not while an incident of it is still being reviewed, nor when the latest review did not approve continued use."""
    if queries.suspension_cause(ctx.session, ctx.deployment) != SuspensionCause.INCIDENT:
        return None
    reviews = queries.incident_reviews(ctx.session, ctx.deployment)
    pending = [case for case, outcome in reviews if outcome is None]
    if pending:
        return Reason(N_("the incident review is not decided yet (case %(cases)s): the chair reinstates after the "
                         "committee's decision on continued use"), cases=", ".join(f"#{c.id}" for c in pending))
    if reviews and reviews[-1][1] not in {"approved", "approved_with_conditions"}:
        return Reason(N_("the incident review (case #%(case)s) did not approve continued use"), case=reviews[-1][0].id)
    return None


@guard("approved_digest_is_served")
def approved_digest_is_served(ctx: Context) -> str | None:
    if queries.suspension_cause(ctx.session, ctx.deployment) != SuspensionCause.INTEGRITY:
        return None
    version = queries.approved_version(ctx.session, ctx.deployment)
    check = check_served_model(version)
    if check.status != "match":
        return Reason(N_("the served model is still not the approved one: %(detail)s"), detail=check.detail)
    return None
