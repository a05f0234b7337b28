"""A case's page and its actions: every allowed transition is a form; a refused one shows its reason."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template, url_for
from flask_login import login_required
from sqlalchemy import select

from .. import eventlog, obligations, queries
from ..db import get_session
from ..diffs import DiffRow, descriptor_diff, version_diff
from ..domain import Role, SubmissionKind
from ..models import Comment, Decision, Deployment, Dossier, ModelVersion, Submission, User, Vote
from ..operations import actions_for
from ..operations.cases import REVISABLE_STATES
from ..permissions import can_see
from ..workflow import SubmissionState
from .access import me, roles
from .actions import fire_posted_action
from .documents import document_form, document_types, may_attach, readable, uploaders
from .forms import CommentForm, ObligationForm, action_form_class
from .review import correction_form, recused_notice

bp = Blueprint("cases", __name__, url_prefix="/submissions")


def _visible_submission(submission_id: int) -> Submission:
    session = get_session()
    submission = session.get(Submission, submission_id)
    if submission is None or not can_see(session, me(), submission):
        abort(404)
    return submission


@bp.get("/<id:submission_id>")
@login_required
def show(submission_id: int):
    session = get_session()
    submission = _visible_submission(submission_id)
    with queries.memoized(session):  # the page and the guards of its actions ask the same questions: once each
        return _show(session, submission)


def _show(session, submission: Submission):
    settings = current_app.config["GOVERNANCE"]
    actions = actions_for(session, submission, me(), settings)
    forms = {a.transition.event: action_form_class(a.transition)(prefix=a.transition.event) for a in actions
             if a.allowed}
    events = eventlog.events_for_submission(session, submission.id)
    actors = {u.id: u for u in session.execute(select(User).where(
        User.id.in_({e.actor_id for e in events if e.actor_id}))).scalars()}
    votes = session.execute(select(Vote, User.name).join(User, User.id == Vote.voter_id)
                            .where(Vote.submission_id == submission.id).order_by(Vote.id)).all()
    decisions = session.execute(select(Decision).where(Decision.submission_id == submission.id)
                                .order_by(Decision.id)).scalars().all()
    dossiers = session.execute(select(Dossier).where(Dossier.submission_id == submission.id)
                               .order_by(Dossier.id)).scalars().all()
    comments = session.execute(select(Comment, User.name).join(User, User.id == Comment.author_id)
                               .where(Comment.submission_id == submission.id).order_by(Comment.id)).all()
    assignments = queries.assignments(session, submission)
    reviewer_names = dict(session.execute(select(User.id, User.name).where(
        User.id.in_([a.reviewer_id for a in assignments]))).all()) if assignments else {}
    mine = roles()
    reviewer = bool(mine & {Role.IRB_MEMBER, Role.AI_SUBCOMMITTEE_MEMBER, Role.IRB_CHAIR}) and \
        submission.state == SubmissionState.IN_REVIEW and submission.submitter_id != me().id
    my_declaration = queries.declaration(session, submission, me()) if reviewer else None
    recused = my_declaration is not None and my_declaration.has_conflict
    # the chair sees every declaration and its corrections, and may record a correction
    chair = Role.IRB_CHAIR in mine and submission.submitter_id != me().id
    declarations = queries.declarations(session, submission) if chair else []
    declarants = dict(session.execute(select(User.id, User.name).where(User.id.in_(
        {d.user_id for d in declarations} | {d.corrected_by_id for d in declarations if d.corrected_by_id}))).all()) \
        if declarations else {}
    correcting = chair and not recused and submission.state == SubmissionState.IN_REVIEW
    # the chair reads what each member said with the vote: the comment and the conditions proposed (the committee's
    # deliberation: not shown to the submitter, nor to a chair recused from the case)
    vote_notes = [vote for vote, _name in votes if vote.comment or vote.proposed_conditions] \
        if chair and me().id not in queries.conflicted_user_ids(session, submission) else None
    documents = readable(queries.case_documents(session, submission))
    descriptor_rows, version_rows, baseline = case_diffs(session, submission)
    return render_template(
        "submissions/show.html", submission=submission, documents=documents, document_uploaders=uploaders(documents),
        document_types=document_types(), document_form=document_form() if may_attach(submission) else None,
        required_documents=queries.required_documents(session, settings, submission, documents),
        descriptor_rows=descriptor_rows, version_rows=version_rows,
        baseline=baseline, can_revise=queries.is_amendment(submission) and submission.submitter_id == me().id
        and submission.state in REVISABLE_STATES,
        deployment=session.get(Deployment, submission.deployment_id),
        version=session.get(ModelVersion, submission.model_version_id),
        classification=queries.latest_classification(session, submission),
        obligations=obligations.with_status(session, submission),
        audit=queries.latest_audit(session, submission), events=events, actors=actors, actions=actions, forms=forms,
        assignments=assignments, reviewer_names=reviewer_names, votes=votes, decisions=decisions, dossiers=dossiers,
        comments=comments, reviewer=reviewer, comment_form=CommentForm(), obligation_form=ObligationForm(),
        can_record_obligations=bool(mine & {Role.COMPLIANCE_OFFICER, Role.IRB_CHAIR}),
        my_declaration=my_declaration, recused=recused, recused_notice=recused_notice() if recused else "",
        declarations=declarations, declarants=declarants,
        correction_form=correction_form(session, submission) if correcting else None,
        vote_notes=vote_notes,
        generic_hidden={"declare_conflict", "answer_checklist", "save_checklist_draft", "vote", "assign_reviewer",
                        "comment", "correct_conflict_declaration"})


def case_diffs(session, submission: Submission) -> tuple[list[DiffRow], list[DiffRow], ModelVersion | None]:
    """What the case changes against what was approved, side by side: an amendment's descriptor against the approved
    one; a change's candidate version against the approved version."""
    if queries.is_amendment(submission):
        return descriptor_diff(queries.amendment_baseline(session, submission), submission.proposed_descriptor), [], \
            None
    if submission.kind == SubmissionKind.CHANGE and submission.baseline_version_id:
        baseline = session.get(ModelVersion, submission.baseline_version_id)
        return [], version_diff(baseline, session.get(ModelVersion, submission.model_version_id)), baseline
    return [], [], None


@bp.post("/<id:submission_id>/events/<event>")
@login_required
def act(submission_id: int, event: str):
    submission = _visible_submission(submission_id)
    return fire_posted_action(submission, event, url_for("cases.show", submission_id=submission.id))
