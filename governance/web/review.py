"""Reviewers' pages (queue, conflict declaration, checklist, signed vote, audit, comments) and the chair's
reviewer assignment. Each form fires one workflow event; a refusal shows its guard's reason."""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import (Blueprint, abort, current_app, flash, jsonify, redirect, render_template, request, send_file,
                   url_for)
from flask_babel import gettext as _
from flask_login import login_required
from sqlalchemy import and_, exists, false, or_, select
from sqlalchemy.orm import aliased

from .. import queries
from ..audit.store import run_rows
from ..committees import load_committee_rules
from ..db import get_session, make_session_factory
from ..dossier.charts import accuracy_chart_png
from ..dossier.context import item_texts
from ..domain import Pathway, Role
from ..models import (Assignment, ChecklistResponse, ConflictDeclaration, Dossier, MeetingAttendance, RoleAssignment,
                      Submission, User, Vote)
from ..operations import TransitionRefused, fire
from ..operations.dossiers import absolute_path
from ..permissions import can_see, roles_of
from ..workflow import SubmissionState
from .access import me, require_roles, roles
from .actions import refusal_reason
from .forms import (AssignForm, CommentForm, CorrectionForm, DeclarationForm, VoteForm, checklist_form_class,
                    opts)
from .i18n import page_language
from .listing import paginate
from .vocabulary import words

bp = Blueprint("review", __name__)
REVIEWER_ROLES = (Role.IRB_MEMBER, Role.AI_SUBCOMMITTEE_MEMBER, Role.IRB_CHAIR)


def recused_notice() -> str:
    """What a recused member is told wherever the review would go on (the case page says it too)."""
    return _("You declared a conflict of interest and are recused from this case: you do not answer its checklist, "
             "vote on it or comment on it. If the declaration is wrong, ask the chair to correct it.")


def _case(submission_id: int) -> Submission:
    session = get_session()
    found = session.get(Submission, submission_id)
    if found is None or not can_see(session, me(), found):
        abort(404)
    return found


def _settings():
    return current_app.config["GOVERNANCE"]


def _fire(case: Submission, event: str, data: dict[str, Any], done: str) -> bool:
    session = get_session()
    try:
        fire(session, case, event, me(), data, settings=_settings())
    except TransitionRefused as refusal:
        session.rollback()
        flash(_("Refused: %(reason)s", reason=refusal_reason(refusal)), "error")
        return False
    flash(done, "success")
    return True


@bp.get("/review")
@require_roles(*REVIEWER_ROLES)
def queue():
    """My cases to review: assigned to me, or (board members) on a meeting I attend."""
    session = get_session()
    user = me()
    on_my_meeting = exists().where(MeetingAttendance.meeting_id == Submission.meeting_id,
                                   MeetingAttendance.user_id == user.id, MeetingAttendance.present.is_(True))
    declared = exists().where(ConflictDeclaration.submission_id == Submission.id, ConflictDeclaration.user_id == user.id)
    later = aliased(ConflictDeclaration)
    recused = exists().where(  # my latest declaration on the case (a correction supersedes mine) is a conflict
        ConflictDeclaration.submission_id == Submission.id, ConflictDeclaration.user_id == user.id,
        ConflictDeclaration.has_conflict.is_(True),
        ~exists().where(later.submission_id == Submission.id, later.user_id == user.id,
                        later.id > ConflictDeclaration.id))
    answered = exists().where(ChecklistResponse.submission_id == Submission.id, ChecklistResponse.reviewer_id == user.id,
                              ChecklistResponse.round == Submission.round)
    voted = exists().where(Vote.submission_id == Submission.id, Vote.voter_id == user.id, Vote.round == Submission.round)
    query = (select(Submission, Assignment.due_date, declared.label("declared"), answered.label("answered"),
                    voted.label("voted"), recused.label("recused"), Assignment.id.is_not(None).label("assigned"))
             .outerjoin(Assignment, and_(Assignment.submission_id == Submission.id, Assignment.reviewer_id == user.id))
             .where(Submission.state == SubmissionState.IN_REVIEW,
                    or_(Assignment.id.is_not(None), on_my_meeting if Role.IRB_MEMBER in roles() else false())))
    page = paginate(session, query, {"due": Assignment.due_date, "case": Submission.id, "updated": Submission.updated_at},
                    "due")
    return render_template("review/queue.html", page=page, today=date.today())


@bp.route("/submissions/<id:submission_id>/declare", methods=["GET", "POST"])
@require_roles(*REVIEWER_ROLES)
def declare(submission_id: int):
    session = get_session()
    case = _case(submission_id)
    form = DeclarationForm()
    if form.validate_on_submit():
        has_conflict = form.has_conflict.data == "true"
        if _fire(case, "declare_conflict", {"has_conflict": has_conflict, "statement": form.statement.data or ""},
                 _("Declaration recorded.")):
            if has_conflict:  # a recused member leaves the review: back to the case, not on to the checklist
                flash(recused_notice(), "info")
                return redirect(url_for("cases.show", submission_id=case.id), code=303)
            # the assigned reviewers go on to the checklist; the other members present vote without it
            onward = "review.checklist" if queries.owes_checklist(session, case, me()) else "review.vote"
            return redirect(url_for(onward, submission_id=case.id), code=303)
    elif request.method == "POST":
        flash(_("Not recorded: see the fields marked below."), "error")
    return render_template("review/declare.html", case=case, form=form,
                           current=queries.declaration(session, case, me()))


def _recused(session, case: Submission):
    """A redirect to the case page, saying why, when the member is recused from the case (else None)."""
    current = queries.declaration(session, case, me())
    if current is not None and current.has_conflict:
        flash(recused_notice(), "error")
        return redirect(url_for("cases.show", submission_id=case.id), code=303)
    return None


@bp.route("/submissions/<id:submission_id>/checklist", methods=["GET", "POST"])
@require_roles(*REVIEWER_ROLES)
def checklist(submission_id: int):
    session = get_session()
    case = _case(submission_id)
    if case.pathway is None:
        abort(409, description=_("The case has no pathway yet: its checklist is chosen when it is routed."))
    declared = queries.declaration(session, case, me())
    if declared is None:
        flash(_("Declare your conflicts of interest first."), "error")
        return redirect(url_for("review.declare", submission_id=case.id), code=303)
    if (away := _recused(session, case)) is not None:
        return away
    selected = queries.checklist_of(session, case, _settings())
    lang = page_language()
    items = selected.applicable_items(queries.case_facts(session, case))
    form = checklist_form_class(items, lang)()
    draft = queries.checklist_draft(session, case, me())
    if request.method == "POST" and request.form.get("draft"):
        return _save_draft(case, form, items)
    if request.method == "GET":
        if draft is not None:  # the reviewer's latest work: a draft saved after any submitted answers
            saved = {item_id: (entry.get("answer") or None, entry.get("comment") or "")
                     for item_id, entry in draft.answers.items()}
        else:
            saved = {item_id: (row.answer, row.comment)
                     for item_id, row in queries.checklist_answers(session, case, me()).items()}
        for item_id, (answer, comment) in saved.items():
            if f"answer__{item_id}" in form:
                form[f"answer__{item_id}"].data = answer
                form[f"comment__{item_id}"].data = comment
    if form.validate_on_submit():
        answers = {item.id: {"answer": form[f"answer__{item.id}"].data,
                             "comment": form[f"comment__{item.id}"].data or ""}
                   for item in items if form[f"answer__{item.id}"].data}
        if _fire(case, "answer_checklist", {"answers": answers}, _("Checklist submitted.")):
            return redirect(url_for("review.vote", submission_id=case.id), code=303)
    elif request.method == "POST":
        flash(_("The checklist is not complete: see the items marked below."), "error")
    return render_template("review/checklist.html", case=case, form=form, checklist=selected, items=items, lang=lang,
                           draft=draft, owes=queries.owes_checklist(session, case, me()))


def _save_draft(case: Submission, form, items):
    """The checklist as the reviewer left it, kept as a draft: no answer until it is submitted complete."""
    answers = {}
    for item in items:
        answer = form[f"answer__{item.id}"].data or ""
        comment = (form[f"comment__{item.id}"].data or "").strip()
        if answer or comment:
            answers[item.id] = {"answer": answer, "comment": comment}
    if not answers:
        flash(_("Nothing to save yet: answer at least one item."), "error")
    else:
        _fire(case, "save_checklist_draft", {"answers": answers},
              _("Draft saved (%(count)s of %(total)s items answered). It is not submitted: it counts when you submit "
                "the complete checklist.", count=sum(1 for a in answers.values() if a["answer"]), total=len(items)))
    return redirect(url_for("review.checklist", submission_id=case.id), code=303)


@bp.route("/submissions/<id:submission_id>/vote", methods=["GET", "POST"])
@require_roles(*REVIEWER_ROLES)
def vote(submission_id: int):
    session = get_session()
    case = _case(submission_id)
    if (away := _recused(session, case)) is not None:
        return away
    form = VoteForm()
    if form.validate_on_submit() and _fire(case, "vote", {"meaning": form.meaning.data, "password": form.password.data,
                                                          "comment": form.comment.data or "",
                                                          "proposed_conditions": form.proposed_conditions.data or ""},
                                           _("Your vote is signed and recorded.")):
        return redirect(url_for("cases.show", submission_id=case.id), code=303)
    # the primary and secondary reviewers answer the checklist first; the other members present vote without it
    missing = queries.missing_checklist_items(session, case, me(), _settings()) \
        if case.pathway and queries.owes_checklist(session, case, me()) else []
    return render_template("review/vote.html", case=case, form=form, missing=missing,
                           audit=queries.latest_audit(session, case), user=me())


@bp.post("/submissions/<id:submission_id>/comment")
@login_required
def comment(submission_id: int):
    case = _case(submission_id)
    form = CommentForm()
    if form.validate_on_submit():
        _fire(case, "comment", {"text": form.text.data}, _("Comment added."))
    else:
        flash(_("A comment cannot be empty."), "error")
    return redirect(url_for("cases.show", submission_id=case.id) + "#comments", code=303)


def correction_candidates(session, case: Submission) -> list[User]:
    """Members whose declaration the chair may correct: those who declared on the case, and the active members
    of the pathway's roles who may review it (not the submitter)."""
    rules = load_committee_rules(_settings().regulations_dir)
    wanted = rules.eligible_roles(case.pathway or Pathway.FULL_BOARD.value)
    declared = {d.user_id for d in queries.declarations(session, case)}
    people = session.execute(select(User).outerjoin(RoleAssignment, RoleAssignment.user_id == User.id)
                             .where(or_(RoleAssignment.role.in_(wanted), User.id.in_(declared)),
                                    User.active.is_(True), User.id != case.submitter_id)
                             .distinct().order_by(User.name)).scalars().all()
    return list(people)


def correction_form(session, case: Submission) -> CorrectionForm:
    form = CorrectionForm(prefix="correction")
    standing = {d.user_id: d for d in queries.declarations(session, case)}  # the latest row wins
    form.member.choices = opts([("", _("— choose —"))] + [
        (u.email, f"{u.name} ({_declared_as(standing.get(u.id))})") for u in correction_candidates(session, case)])
    return form


def _declared_as(row: ConflictDeclaration | None) -> str:
    if row is None:
        return _("not declared")
    return _("recused") if row.has_conflict else _("no conflict")


@bp.post("/submissions/<id:submission_id>/declarations/correct")
@require_roles(Role.IRB_CHAIR)
def correct_declaration(submission_id: int):
    """The chair records a correction of a member's conflict declaration, with the reason."""
    session = get_session()
    case = _case(submission_id)
    form = correction_form(session, case)
    target = url_for("cases.show", submission_id=case.id) + "#declarations"
    if not form.validate_on_submit():
        problems = "; ".join(f"{form[name].label.text}: {', '.join(str(e) for e in errors)}"
                             for name, errors in form.errors.items())
        flash(_("Not recorded: %(problems)s", problems=problems), "error")
        return redirect(target, code=303)
    _fire(case, "correct_conflict_declaration",
          {"member": form.member.data, "has_conflict": form.has_conflict.data == "true",
           "statement": form.statement.data or "", "reason": form.reason.data},
          _("Correction recorded."))
    return redirect(target, code=303)


def eligible_reviewers(session, case: Submission) -> list[User]:
    """Members who may review this case: the pathway's roles, active, not the submitter, not conflicted,
    not already assigned."""
    rules = load_committee_rules(_settings().regulations_dir)
    wanted = rules.eligible_roles(case.pathway or Pathway.FULL_BOARD.value)
    conflicted = queries.conflicted_user_ids(session, case)
    assigned = {a.reviewer_id for a in queries.assignments(session, case)}
    people = session.execute(select(User).join(RoleAssignment, RoleAssignment.user_id == User.id)
                             .where(RoleAssignment.role.in_(wanted), User.active.is_(True),
                                    User.id != case.submitter_id).distinct().order_by(User.name)).scalars().all()
    return [u for u in people if u.id not in conflicted and u.id not in assigned]


@bp.route("/submissions/<id:submission_id>/assign", methods=["GET", "POST"])
@require_roles(Role.IRB_CHAIR)
def assign(submission_id: int):
    session = get_session()
    case = _case(submission_id)
    candidates = eligible_reviewers(session, case)
    form = AssignForm()
    form.reviewer.choices = opts([(u.email, f"{u.name} ({', '.join(words(r) for r in sorted(roles_of(session, u)))})")
                                  for u in candidates])
    if form.validate_on_submit():
        data = {"reviewer": form.reviewer.data}
        if form.due_date.data:
            data["due_date"] = form.due_date.data.isoformat()
        if _fire(case, "assign_reviewer", data, _("Reviewer assigned.")):
            return redirect(url_for("review.assign", submission_id=case.id), code=303)
    assigned = [(a, session.get(User, a.reviewer_id)) for a in queries.assignments(session, case)]
    return render_template("review/assign.html", case=case, form=form, candidates=candidates, assigned=assigned)


@bp.get("/submissions/<id:submission_id>/audit")
@login_required
def audit(submission_id: int):
    session = get_session()
    case = _case(submission_id)
    run = queries.latest_audit(session, case)
    rows, texts = [], {}
    if run is not None and run.status == "completed":
        rows = run_rows(make_session_factory(session.get_bind()), run.id)
        failing = [r for r in rows if not r["correct"]]
        texts = item_texts(run.items_source, {r["item_id"] for r in failing[:200]})
        rows = failing[:200]
    dimensions = [{"code": c, **e} for c, e in ((run.summary or {}).get("dimensions") or {}).items() if e["n"]] \
        if run else []
    return render_template("review/audit.html", case=case, run=run, dimensions=dimensions,
                           chart_png=accuracy_chart_png(dimensions) if dimensions else "", failing=rows, texts=texts)


@bp.get("/submissions/<id:submission_id>/audit/progress.json")
@login_required
def audit_progress(submission_id: int):
    case = _case(submission_id)
    run = queries.latest_audit(get_session(), case)
    if run is None:
        return jsonify({"status": None, "state": case.state})
    return jsonify({"status": run.status, "status_label": words(run.status), "done": run.items_done,
                    "total": run.items_total, "verdict": run.verdict,
                    "percent": round(100 * run.items_done / run.items_total) if run.items_total else 0,
                    "state": case.state})


@bp.get("/submissions/<id:submission_id>/dossiers/<id:dossier_id>")
@login_required
def dossier(submission_id: int, dossier_id: int):
    case = _case(submission_id)
    found = get_session().get(Dossier, dossier_id)
    if found is None or found.submission_id != case.id:
        abort(404)
    return send_file(absolute_path(_settings(), found), mimetype="application/pdf", as_attachment=True,
                     download_name=f"dossier-{case.id}-{found.gate}-{found.id}.pdf")
