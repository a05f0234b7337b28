"""The named effects of the workflow: what a transition writes besides the state and its event.

Effects run inside :func:`~governance.operations.engine.fire` after every guard agreed, in the same
transaction; they flush, never commit. What they add to ``ctx.payload`` goes into the event.
"""

from __future__ import annotations

import hashlib

from dateutil.relativedelta import relativedelta
from sqlalchemy import select

from .. import eventlog, jobs, queries
from ..committees import load_committee_rules
from ..domain import POSITIVE_VOTES, Pathway, Role, SubmissionKind, SuspensionCause, VoteMeaning
from ..models import (AgendaItem, Assignment, ChecklistDraft, ChecklistResponse, Classification, Comment, ConflictDeclaration, Decision, Incident,
                      Meeting, ModelVersion, User, Vote)
from ..monitoring.policy import continuing_review_months, load_monitoring
from ..notify import notify, people_with_roles, step_subject
from ..obligations import open_blocking_obligations
from ..workflow import DECISION_OUTCOMES, DeploymentStatus
from ..workflow.registry import Context, Registry
from .audits import open_gate_audit
from .conditions import record_conditions
from .descriptors import write_descriptor
from .classify import classify_submission

#: The effects the transition tables name (the engine reads this registry).
effect = Registry("effect")


# --- telling people ------------------------------------------------------------------------------
# Each step someone must act on or needs to know is told by the effect that performs it, in the same
# transaction (the e-mail, when SMTP is configured, is a job started after the commit: see ``notify``).
# Subjects are stored in English from ``notify.STEP_SUBJECTS``; the pages show them and their explanations
# (``notify.STEP_BODIES``) in the reader's language, and e-mails in the recipient's.

def _case_link(ctx: Context) -> str:
    return f"/submissions/{ctx.submission.id}"


def _tell_submitter(ctx: Context, kind: str, body: str = "", **values) -> None:
    submitter = ctx.session.get(User, ctx.submission.submitter_id)
    if ctx.actor is not None and submitter is not None and submitter.id == ctx.actor.id:
        return  # the submitter did it themselves
    notify(ctx.session, ctx.settings, [submitter], kind=kind, subject=step_subject(kind, case=ctx.submission.id, **values),
           body=body, link=_case_link(ctx), now=ctx.now)


def _tell_chairs_of_escalation(ctx: Context, reason: str) -> None:
    chairs = [c for c in people_with_roles(ctx.session, Role.IRB_CHAIR) if ctx.actor is None or c.id != ctx.actor.id]
    notify(ctx.session, ctx.settings, chairs, kind="escalation",
           subject=step_subject("escalation", case=ctx.submission.id), body=reason, link=_case_link(ctx), now=ctx.now)


@effect("notify_return")
def notify_return(ctx: Context) -> None:
    """Screening returned the case: the submitter must complete it and resubmit."""
    _tell_submitter(ctx, "return", body=ctx.data.get("reason") or "")


@effect("stamp_submitted")
def stamp_submitted(ctx: Context) -> None:
    ctx.submission.submitted_at = ctx.now
    version = ctx.session.get(ModelVersion, ctx.submission.model_version_id)
    ctx.payload.update(model_version=version.version_label, weights_digest=version.weights_digest)


@effect("start_new_round")
def start_new_round(ctx: Context) -> None:
    ctx.submission.round += 1
    ctx.submission.meeting_id = None
    ctx.payload["round"] = ctx.submission.round


# --- classification and routing ------------------------------------------------------------------

@effect("classify")
def classify(ctx: Context) -> None:
    classification = classify_submission(ctx.session, ctx.submission, ctx.settings, actor=ctx.actor, now=ctx.now)
    ctx.payload.update(classification_id=classification.id, nmpa_status=classification.nmpa_status,
                       review_as_class=classification.review_as_class, pathway=classification.pathway,
                       materiality=ctx.submission.materiality, rules_version=classification.rules_version)


@effect("confirm_classification")
def confirm_classification(ctx: Context) -> None:
    classification = queries.latest_classification(ctx.session, ctx.submission)
    classification.confirmed_by_id = ctx.actor.id if ctx.actor else None  # None: confirmed by auto-screening
    classification.confirmed_at = ctx.now
    if not queries.is_amendment(ctx.submission):  # an amendment's scope is not the deployment's until approved
        ctx.deployment.nmpa_status = classification.nmpa_status
    ctx.payload["classification_id"] = classification.id


@effect("override_classification")
def override_classification(ctx: Context) -> None:
    original = queries.latest_classification(ctx.session, ctx.submission)
    review_class = None if ctx.data["review_as_class"] == "none" else ctx.data["review_as_class"]
    result = dict(original.result)
    result["override"] = {"pathway": ctx.data["pathway"], "review_as_class": review_class,
                          "justification": ctx.data["justification"], "by": ctx.actor.email,
                          "original_pathway": original.pathway, "original_review_as_class": original.review_as_class}
    override = Classification(
        submission_id=ctx.submission.id, result=result, rules_version=original.rules_version,
        input_sha256=original.input_sha256, nmpa_status=original.nmpa_status, review_as_class=review_class,
        pathway=ctx.data["pathway"], prohibited=original.prohibited,
        expert_reexamination=original.expert_reexamination, is_override=True, overrides_id=original.id,
        justification=ctx.data["justification"], created_by_id=ctx.actor.id, created_at=ctx.now,
        confirmed_by_id=ctx.actor.id, confirmed_at=ctx.now)
    ctx.session.add(override)
    ctx.session.flush()
    if not queries.is_amendment(ctx.submission):
        ctx.deployment.nmpa_status = original.nmpa_status
    ctx.payload.update(classification_id=override.id, original_classification_id=original.id,
                       original_pathway=original.pathway, original_review_as_class=original.review_as_class)


@effect("route")
def route(ctx: Context) -> None:
    classification = queries.latest_classification(ctx.session, ctx.submission)
    ctx.submission.pathway = classification.pathway
    ctx.payload.update(pathway=classification.pathway,
                       pathway_reasons=classification.result.get("pathway_reasons", []))
    if ctx.submission.incident_id:
        ctx.session.get(Incident, ctx.submission.incident_id).status = "under_review"


# --- the audit gate ------------------------------------------------------------------------------

@effect("start_audit")
def start_audit(ctx: Context) -> None:
    run = open_gate_audit(ctx.session, ctx.submission, ctx.settings, actor=ctx.actor, now=ctx.now)
    ctx.payload.update(audit_run=run.id, policy_id=run.policy.get("id"), policy_version=run.policy.get("version"),
                       policy_digest=run.policy_digest, item_set_digest=run.item_set_digest,
                       reserve_digest=run.reserve_digest or None, seed=run.seed)


@effect("retry_audit")
def retry_audit(ctx: Context) -> None:
    """The same frozen run, started again from its stored results (its policy, items and seed do not change)."""
    run = queries.latest_audit(ctx.session, ctx.submission)
    ctx.payload.update(audit_run=run.id, previous_status=run.status, attempts=run.attempts)
    run.status, run.cancel_requested, run.error = "queued", False, ""
    run.lease_owner, run.lease_expires_at = "", None
    jobs.enqueue(ctx.session, ctx.settings, "audit.run", key=run.id, run_id=run.id)


@effect("emit_dossier")
def emit_dossier(ctx: Context) -> None:
    """Queue the signed dossier of this gate; it is rendered once the gate event is committed."""
    jobs.enqueue(ctx.session, ctx.settings, "dossier.emit", key=ctx.submission.id, submission_id=ctx.submission.id)


@effect("record_audit_outcome")
def record_audit_outcome(ctx: Context) -> None:
    run = queries.latest_audit(ctx.session, ctx.submission)
    ctx.payload.update(audit_run=run.id, verdict=run.verdict, verdict_reasons=run.verdict_reasons,
                       demo=run.demo, accuracy=run.summary.get("overall", {}).get("accuracy"),
                       results_digest=run.results_digest, policy_digest=run.policy_digest)
    passed = ctx.transition.event == "audit_passed"
    if passed:
        _tell_submitter(ctx, "audit_finished")
    else:
        _tell_submitter(ctx, "audit_failed", body="; ".join(str(r) for r in (run.verdict_reasons or [])),
                        verdict=run.verdict)


@effect("resolve_materiality")
def resolve_materiality(ctx: Context) -> None:
    """A change whose materiality waited for the audit: with no significant decline against the approved version
    it stays minor; otherwise it is material and goes to the full board."""
    submission = ctx.submission
    if submission.kind != SubmissionKind.CHANGE or submission.materiality != "depends_on_audit":
        return
    run = queries.latest_audit(ctx.session, submission)
    regression = (run.summary or {}).get("regression")
    if not regression:
        return  # the audit did not get as far as the comparison: materiality stays open
    unchanged = bool(regression.get("no_significant_decline"))
    submission.materiality = "minor" if unchanged else "material"
    if not unchanged:
        submission.pathway = Pathway.FULL_BOARD.value
    ctx.payload.update(materiality=submission.materiality, pathway=submission.pathway,
                       materiality_basis="the paired audit shows " + (
                           "no significant decline against" if unchanged else
                           "a significant decline (" + ", ".join(regression.get("significant_declines", [])) +
                           ") against") + " the approved version")


@effect("escalate_to_full_board")
def escalate_to_full_board(ctx: Context) -> None:
    _escalate(ctx, ctx.data.get("reason") or "escalated")


def _escalate(ctx: Context, reason: str) -> None:
    ctx.payload.update(_move_to_full_board(ctx.submission, reason))
    _tell_chairs_of_escalation(ctx, reason)


def _move_to_full_board(submission, reason: str) -> dict:
    """The one way a case leaves the fast track: the full board, a new round, no meeting yet."""
    previous = submission.pathway
    submission.pathway = Pathway.FULL_BOARD.value
    submission.round += 1
    submission.meeting_id = None
    return {"previous_pathway": previous, "pathway": submission.pathway, "round": submission.round,
            "escalation_reason": reason}


# --- review --------------------------------------------------------------------------------------

def _user_by_email(ctx: Context, email: str) -> User:
    return ctx.session.execute(select(User).where(User.email == email)).scalars().one()


@effect("assign_reviewer")
def assign_reviewer(ctx: Context) -> None:
    reviewer = _user_by_email(ctx, ctx.data["reviewer"])
    due = ctx.data.get("due_date") or (ctx.now.date() + relativedelta(days=14))
    ctx.session.add(Assignment(submission_id=ctx.submission.id, reviewer_id=reviewer.id, assigned_by_id=ctx.actor.id,
                               assigned_at=ctx.now, due_date=due))
    ctx.payload.update(reviewer=reviewer.email, reviewer_name=reviewer.name, due_date=due.isoformat())
    notify(ctx.session, ctx.settings, [reviewer], kind="assignment",
           subject=step_subject("assignment", case=ctx.submission.id, due=due.isoformat()), link=_case_link(ctx),
           now=ctx.now)


@effect("record_conflict_declaration")
def record_conflict_declaration(ctx: Context) -> None:
    statement = (ctx.data.get("statement") or "").strip()  # a conflict's statement is required by its guard
    ctx.session.add(ConflictDeclaration(submission_id=ctx.submission.id, user_id=ctx.actor.id,
                                        has_conflict=ctx.data["has_conflict"], statement=statement,
                                        declared_at=ctx.now))
    ctx.payload.update(has_conflict=ctx.data["has_conflict"], recused=ctx.data["has_conflict"])


@effect("record_conflict_correction")
def record_conflict_correction(ctx: Context) -> None:
    """The chair's correction: a new declaration row for the member that supersedes their latest one (which is
    kept); the member's standing on the case follows it from now on (a vote they signed while recused is not
    counted; a member whose recusal is lifted may answer the checklist and vote)."""
    member = ctx.session.execute(select(User).where(User.email == ctx.data["member"])).scalars().one()
    previous = queries.declaration(ctx.session, ctx.submission, member)
    has_conflict = bool(ctx.data["has_conflict"])
    row = ConflictDeclaration(submission_id=ctx.submission.id, user_id=member.id, has_conflict=has_conflict,
                              statement=(ctx.data.get("statement") or "").strip(), declared_at=ctx.now,
                              corrected_by_id=ctx.actor.id, corrects_id=previous.id if previous else None,
                              reason=ctx.data["reason"].strip())
    ctx.session.add(row)
    ctx.session.flush()
    ctx.payload.update(member_name=member.name, declaration=row.id, corrects=row.corrects_id,
                       was_recused=bool(previous and previous.has_conflict), recused=has_conflict)
    if member.id != ctx.actor.id:
        standing = "recused" if has_conflict else "not recused: you may review and vote"
        notify(ctx.session, ctx.settings, [member], kind="conflict_correction",
               subject=f"Case #{ctx.submission.id}: the chair corrected your conflict declaration ({standing})",
               body=row.reason, link=f"/submissions/{ctx.submission.id}", now=ctx.now)


@effect("store_checklist_answers")
def store_checklist_answers(ctx: Context) -> None:
    checklist = queries.checklist_of(ctx.session, ctx.submission, ctx.settings)
    existing = queries.checklist_answers(ctx.session, ctx.submission, ctx.actor)
    for item_id, entry in sorted(ctx.data["answers"].items()):
        row = existing.get(item_id)
        if row is None:
            row = ChecklistResponse(submission_id=ctx.submission.id, round=ctx.submission.round,
                                    reviewer_id=ctx.actor.id, checklist_id=checklist.id, item_id=item_id,
                                    checklist_version=checklist.version, answer=entry["answer"])
            ctx.session.add(row)
        row.answer = entry["answer"]
        row.comment = str(entry.get("comment") or "").strip()
        row.answered_at = ctx.now
    draft = queries.checklist_draft(ctx.session, ctx.submission, ctx.actor)
    if draft is not None:  # submitted: the draft has become the answers
        ctx.session.delete(draft)
    ctx.payload.update(checklist=checklist.id, checklist_version=checklist.version,
                       answers={k: v["answer"] for k, v in sorted(ctx.data["answers"].items())},
                       draft_replaced=draft is not None)


@effect("store_checklist_draft")
def store_checklist_draft(ctx: Context) -> None:
    """The reviewer's checklist as they left it (replacing their earlier draft of this round); no answer."""
    checklist = queries.checklist_of(ctx.session, ctx.submission, ctx.settings)
    entries = {item_id: {"answer": str(entry.get("answer") or ""), "comment": str(entry.get("comment") or "").strip()}
               for item_id, entry in sorted(ctx.data["answers"].items())}
    draft = queries.checklist_draft(ctx.session, ctx.submission, ctx.actor)
    if draft is None:
        draft = ChecklistDraft(submission_id=ctx.submission.id, round=ctx.submission.round, reviewer_id=ctx.actor.id,
                               checklist_id=checklist.id, checklist_version=checklist.version)
        ctx.session.add(draft)
    draft.checklist_id, draft.checklist_version = checklist.id, checklist.version
    draft.answers = entries
    draft.saved_at = ctx.now
    ctx.session.flush()
    answered = {k: v["answer"] for k, v in entries.items() if v["answer"]}
    missing = queries.missing_checklist_items(ctx.session, ctx.submission, ctx.actor, ctx.settings,
                                              also_answered=set(answered))
    ctx.payload.update(checklist=checklist.id, checklist_version=checklist.version, draft=draft.id,
                       answers=answered, answered=len(answered), still_missing=len(missing))


@effect("schedule_meeting")
def schedule_meeting(ctx: Context) -> None:
    """The case goes on the meeting's agenda, last; moved from another meeting's agenda, it leaves that one."""
    meeting = ctx.session.get(Meeting, ctx.data["meeting"])
    submission = ctx.submission
    item = queries.agenda_item(ctx.session, submission)
    if item is not None and item.meeting_id != meeting.id:
        _drop_agenda_item(ctx, item)
        ctx.payload["moved_from_meeting"] = item.meeting_id
        item = None
    if item is None:
        item = AgendaItem(meeting_id=meeting.id, submission_id=submission.id, round=submission.round,
                          position=len(queries.agenda(ctx.session, meeting)) + 1, added_by_id=ctx.actor.id,
                          added_at=ctx.now)
        ctx.session.add(item)
    submission.meeting_id = meeting.id
    ctx.session.flush()
    ctx.payload.update(meeting=meeting.id, meeting_title=meeting.title, agenda_item=item.id, position=item.position,
                       scheduled_for=meeting.scheduled_for.isoformat(timespec="minutes"))
    _tell_of_hearing(ctx, meeting)


def _tell_of_hearing(ctx: Context, meeting: Meeting) -> None:
    """The case will be heard: the board members (who are expected at the meeting) and the submitter are told."""
    audience = [ctx.session.get(User, ctx.submission.submitter_id), *people_with_roles(ctx.session, Role.IRB_MEMBER)]
    when = meeting.scheduled_for.strftime("%Y-%m-%d %H:%M UTC")
    notify(ctx.session, ctx.settings, [u for u in audience if u is not None and u.id != ctx.actor.id],
           kind="meeting_scheduled", subject=step_subject("meeting_scheduled", case=ctx.submission.id, when=when),
           body=" · ".join(t for t in (meeting.title, meeting.location) if t), link=_case_link(ctx),
           dedupe_key=f"meeting-scheduled:{ctx.submission.id}:{ctx.submission.round}:{meeting.id}", now=ctx.now)


def _drop_agenda_item(ctx: Context, item: AgendaItem) -> None:
    """Remove an item from its meeting's agenda and close the gap, so the order the chair set is kept."""
    ctx.session.delete(item)
    ctx.session.flush()
    for position, rest in enumerate(queries.agenda(ctx.session, ctx.session.get(Meeting, item.meeting_id)), 1):
        rest.position = position


@effect("remove_from_agenda")
def remove_from_agenda(ctx: Context) -> None:
    meeting_id = ctx.submission.meeting_id
    item = queries.agenda_item(ctx.session, ctx.submission)
    if item is not None:
        _drop_agenda_item(ctx, item)
    ctx.submission.meeting_id = None
    ctx.session.flush()
    ctx.payload.update(meeting=meeting_id, agenda_item=item.id if item is not None else None)


def signature_digest(submission_id: int, round_: int, weights_digest: str, meaning: str, signer: str,
                     signed_at: str) -> str:
    """sha256 over what the signer signed: the link between a signature and its record (21 CFR 11.70)."""
    content = eventlog.canonical_json({"submission": submission_id, "round": round_, "weights_digest": weights_digest,
                                       "meaning": meaning, "signer": signer, "signed_at": signed_at})
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


@effect("record_vote")
def record_vote(ctx: Context) -> None:
    version = ctx.session.get(ModelVersion, ctx.submission.model_version_id)
    signed_at = eventlog.format_timestamp(ctx.now)
    digest = signature_digest(ctx.submission.id, ctx.submission.round, version.weights_digest, ctx.data["meaning"],
                              ctx.actor.email, signed_at)
    vote = Vote(submission_id=ctx.submission.id, round=ctx.submission.round, voter_id=ctx.actor.id,
                meeting_id=ctx.submission.meeting_id if ctx.submission.pathway == Pathway.FULL_BOARD else None,
                meaning=ctx.data["meaning"], comment=ctx.data.get("comment") or "",
                proposed_conditions=ctx.data.get("proposed_conditions") or "", printed_name=ctx.actor.name,
                signed_at=ctx.now, record_digest=digest)
    ctx.session.add(vote)
    ctx.session.flush()
    ctx.payload.update(vote=vote.id, round=vote.round, signature={
        "printed_name": vote.printed_name, "signed_at_utc": signed_at, "meaning": vote.meaning,
        "method": vote.method, "record_digest": digest, "weights_digest": version.weights_digest})


@effect("escalate_divergent_fast_track")
def escalate_divergent_fast_track(ctx: Context) -> None:
    """On the fast track a negative, abstaining or divergent opinion sends the case to the full board."""
    submission = ctx.submission
    if submission.pathway != Pathway.AI_SUBCOMMITTEE.value:
        return
    meanings = {v.meaning for v in queries.votes_this_round(ctx.session, submission)}
    positive = {m.value for m in POSITIVE_VOTES}
    reason = None
    if VoteMeaning.DISAPPROVE.value in meanings:
        reason = "a fast-track reviewer voted to disapprove"
    elif VoteMeaning.ABSTAIN.value in meanings:
        reason = "a fast-track reviewer abstained"
    elif meanings & positive and meanings - positive:
        reason = "fast-track reviewers' opinions diverge"
    if reason is None:
        return

    def escalate() -> None:
        payload = _move_to_full_board(submission, reason)
        eventlog.append(ctx.session, "escalated_to_full_board", actor=None, submission_id=submission.id,
                        deployment_id=submission.deployment_id, from_state=submission.state,
                        to_state=submission.state, payload=payload, occurred_at=ctx.now)
        _tell_chairs_of_escalation(ctx, reason)

    ctx.then.append(escalate)


@effect("store_comment")
def store_comment(ctx: Context) -> None:
    comment = Comment(submission_id=ctx.submission.id, author_id=ctx.actor.id, text=ctx.data["text"],
                      created_at=ctx.now)
    ctx.session.add(comment)
    ctx.session.flush()
    ctx.payload["comment"] = comment.id


# --- the decision gate ---------------------------------------------------------------------------

@effect("record_decision")
def record_decision(ctx: Context) -> None:
    submission = ctx.submission
    outcome = DECISION_OUTCOMES[ctx.transition.event].value
    rules = load_committee_rules(ctx.settings.regulations_dir)
    counted = queries.tally(ctx.session, submission, rules) if submission.pathway else None
    counts = counted.as_record() if counted else {}
    quorum = counted.quorum.as_record() if counted and counted.quorum else {}
    version = ctx.session.get(ModelVersion, submission.model_version_id)
    open_obligations = open_blocking_obligations(ctx.session, submission)
    conditions = ctx.data.get("conditions") or ""
    if open_obligations and outcome == "approved_with_conditions":
        conditions += "\n\nOpen obligations to be satisfied before clinical use: " + ", ".join(open_obligations)
    decision = Decision(submission_id=submission.id, round=submission.round, outcome=outcome,
                        conditions=conditions.strip(),
                        reason=ctx.data.get("reason") or ctx.data.get("note") or "", decided_by_id=ctx.actor.id,
                        decided_at=ctx.now, meeting_id=submission.meeting_id, model_version_id=version.id,
                        tally=counts, quorum=quorum)
    ctx.session.add(decision)
    ctx.session.flush()
    submission.decided_at = ctx.now
    if submission.incident_id:
        ctx.session.get(Incident, submission.incident_id).status = "closed"
    ctx.payload.update(decision=decision.id, outcome=outcome, model_version=version.version_label,
                       weights_digest=version.weights_digest, tally=counts, quorum_met=quorum.get("met"),
                       open_blocking_obligations=open_obligations)
    if outcome == "approved_with_conditions":
        tracked = record_conditions(ctx.session, decision, ctx.deployment, due=ctx.data.get("conditions_due"),
                                    blocking=bool(ctx.data.get("conditions_blocking")), now=ctx.now)
        ctx.payload.update(conditions=[{"id": c.id, "number": c.number, "due_date": c.due_date.isoformat(),
                                        "blocking": c.blocking} for c in tracked])
    kind = "revisions_required" if outcome == "revisions_required" else "decision"
    _tell_submitter(ctx, kind, body="\n\n".join(t for t in (decision.reason, decision.conditions) if t),
                    outcome=outcome)


@effect("apply_approval")
def apply_approval(ctx: Context) -> None:
    """The approved weights digest becomes the deployment's and the continuing-review clock restarts; a
    first approval activates it, and an approved continuing review renews a lapsed one. An incident case's
    approval (continued use) changes neither: a suspension for an incident ends only by reinstatement."""
    submission = ctx.submission
    deployment = ctx.deployment
    if submission.kind == SubmissionKind.INCIDENT:
        ctx.payload["incident"] = submission.incident_id
        return
    deployment.approved_version_id = submission.model_version_id
    if queries.is_amendment(submission):
        _apply_amendment(ctx)
    months = _continuing_review_months(ctx)
    deployment.continuing_review_due = ctx.now.date() + relativedelta(months=months)
    ctx.payload.update(continuing_review_due=deployment.continuing_review_due.isoformat(),
                       approved_version_id=submission.model_version_id)
    _schedule_reaudit(ctx, deployment)

    def update_deployment_status() -> None:
        reason = f"submission {submission.id} ({submission.kind}) approved"
        if deployment.status == DeploymentStatus.PENDING:
            ctx.fire(deployment, "activate")
        elif deployment.status == DeploymentStatus.EXPIRED or (
                deployment.status == DeploymentStatus.SUSPENDED and
                queries.suspension_cause(ctx.session, deployment) == SuspensionCause.CONTINUING_REVIEW_OVERDUE):
            ctx.fire(deployment, "renew", {"reason": reason})

    ctx.then.append(update_deployment_status)


def _apply_amendment(ctx: Context) -> None:
    """The approved amendment's descriptor becomes the deployment's approved scope (until now the previous one
    stayed in force); its ``descriptor_updated`` event names the case."""
    submission, deployment = ctx.submission, ctx.deployment
    before = deployment.descriptor_sha256
    write_descriptor(deployment, submission.proposed_descriptor, now=ctx.now)
    classification = queries.latest_classification(ctx.session, submission)
    if classification is not None:
        deployment.nmpa_status = classification.nmpa_status
    ctx.payload.update(descriptor_sha256=deployment.descriptor_sha256)
    ctx.then.append(lambda: eventlog.append(
        ctx.session, "descriptor_updated", actor=ctx.actor, submission_id=submission.id, deployment_id=deployment.id,
        occurred_at=ctx.now, payload={"before_sha256": before, "after_sha256": deployment.descriptor_sha256,
                                      "amendment": submission.id}))


def _continuing_review_months(ctx: Context) -> int:
    classification = queries.latest_classification(ctx.session, ctx.submission)
    return continuing_review_months(ctx.settings.regulations_dir, ctx.submission.pathway,
                                    classification.review_as_class if classification else None)


# --- after approval: monitoring ------------------------------------------------------------------

def _schedule_reaudit(ctx: Context, deployment) -> None:
    interval = load_monitoring(ctx.settings.regulations_dir).reaudit.interval_days
    deployment.next_reaudit_at = ctx.now + relativedelta(days=interval)
    ctx.payload["next_reaudit_at"] = deployment.next_reaudit_at


@effect("schedule_monitoring")
def schedule_monitoring(ctx: Context) -> None:
    """An active deployment is re-audited on the monitoring schedule, starting one interval from now."""
    _schedule_reaudit(ctx, ctx.deployment)


def _deployment_audience(ctx: Context) -> list[User]:
    owner = ctx.session.get(User, ctx.deployment.owner_id)
    return [owner, *people_with_roles(ctx.session, Role.IRB_CHAIR, Role.COMPLIANCE_OFFICER)]


@effect("record_suspension")
def record_suspension(ctx: Context) -> None:
    cause = ctx.data.get("cause") or SuspensionCause.CHAIR.value
    ctx.data["cause"] = cause
    ctx.payload["cause"] = cause
    deployment = ctx.deployment
    notify(ctx.session, ctx.settings, _deployment_audience(ctx), kind="suspension",
           subject=f"{deployment.name} suspended ({cause.replace('_', ' ')})", body=ctx.data["reason"],
           link=f"/deployments/{deployment.id}", now=ctx.now)


@effect("record_reinstatement")
def record_reinstatement(ctx: Context) -> None:
    deployment = ctx.deployment
    suspension = queries.latest_suspension(ctx.session, deployment)
    if suspension is not None:
        ctx.payload.update(suspended_by_event=suspension.seq, suspension_cause=suspension.payload.get("cause"))
    _schedule_reaudit(ctx, deployment)
    notify(ctx.session, ctx.settings, _deployment_audience(ctx), kind="reinstatement",
           subject=f"{deployment.name} reinstated by the chair", body=ctx.data["justification"],
           link=f"/deployments/{deployment.id}", now=ctx.now)


@effect("record_expiry")
def record_expiry(ctx: Context) -> None:
    deployment = ctx.deployment
    notify(ctx.session, ctx.settings, _deployment_audience(ctx), kind="expiry", subject=f"{deployment.name} expired",
           body=ctx.data["reason"], link=f"/deployments/{deployment.id}", now=ctx.now)
