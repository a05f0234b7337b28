"""The IRB office and chair: the intake queue, full-board meetings with their agenda (cases ready for the board are
added from a list), attendance with alternates, the motion on each item, a live quorum, and the signed minutes."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, abort, current_app, flash, jsonify, redirect, render_template, request, send_file, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from .. import queries
from ..committees import load_committee_rules
from ..db import get_session
from ..domain import Pathway, Role
from ..dossier.keys import SigningKeyError
from ..schemas import NOTE_MAX
from ..models import (ATTENDANCE_CAPACITIES, AgendaItem, Deployment, Dossier, Meeting, MeetingAttendance,
                      ModelVersion, RoleAssignment, Submission, User)
from ..operations import GovernanceError, TransitionRefused, fire
from ..operations.dossiers import absolute_path, emit_minutes, minutes_of
from ..operations.meetings import create_meeting, record_attendance, record_motion, set_meeting_status
from ..workflow import SubmissionState
from .access import me, require_roles, roles
from .actions import refusal_reason
from .forms import MeetingForm
from .listing import paginate
from .vocabulary import say, words

bp = Blueprint("chair", __name__)
INTAKE_STATES = (SubmissionState.SUBMITTED, SubmissionState.SCREENING, SubmissionState.CLASSIFIED,
                 SubmissionState.HELD)


@bp.get("/intake")
@require_roles(Role.IRB_CHAIR, Role.ADMIN)
def intake():
    session = get_session()
    state = request.args.get("state")
    states = [state] if state in {s.value for s in INTAKE_STATES} else [s.value for s in INTAKE_STATES]
    query = (select(Submission, Deployment.name, ModelVersion.version_label, User.name.label("submitter"))
             .join(Deployment, Deployment.id == Submission.deployment_id)
             .join(ModelVersion, ModelVersion.id == Submission.model_version_id)
             .join(User, User.id == Submission.submitter_id).where(Submission.state.in_(states)))
    page = paginate(session, query, {"submitted": Submission.submitted_at, "case": Submission.id,
                                     "state": Submission.state, "kind": Submission.kind}, "submitted")
    return render_template("chair/intake.html", page=page, states=INTAKE_STATES, state=state)


@bp.route("/meetings", methods=["GET", "POST"])
@require_roles(Role.IRB_CHAIR, Role.IRB_MEMBER, Role.ADMIN)
def meetings():
    session = get_session()
    form = MeetingForm()
    if form.validate_on_submit():
        if Role.IRB_CHAIR not in roles():
            abort(403, description=_("Only the chair convenes meetings."))
        moment = datetime.fromisoformat(form.scheduled_for.data.replace(" ", "T")).replace(tzinfo=UTC)
        created = create_meeting(session, title=form.title.data, scheduled_for=moment, location=form.location.data or "",
                                 actor=me())
        flash(_("Meeting convened."), "success")
        return redirect(url_for("chair.meeting", meeting_id=created.id), code=303)
    page = paginate(session, select(Meeting), {"when": Meeting.scheduled_for, "title": Meeting.title}, "when")
    return render_template("chair/meetings.html", page=page, form=form, can_convene=Role.IRB_CHAIR in roles())


def _members(session) -> list[User]:
    rules = load_committee_rules(current_app.config["GOVERNANCE"].regulations_dir)
    wanted = rules.eligible_roles(Pathway.FULL_BOARD.value)
    return session.execute(select(User).join(RoleAssignment, RoleAssignment.user_id == User.id)
                           .where(RoleAssignment.role.in_(wanted), User.active.is_(True)).distinct()
                           .order_by(User.name)).scalars().all()


def _quorum_rows(session, meeting: Meeting) -> list[dict]:
    """The agenda in order; an item still before this meeting (same case, same round) with its live quorum and
    votes, an item whose case has moved on (decided and started a new round) without them."""
    rules = load_committee_rules(current_app.config["GOVERNANCE"].regulations_dir)
    rows = []
    for item in queries.agenda(session, meeting):
        case = session.get(Submission, item.submission_id)
        row = {"item": item, "case": case, "current": case.meeting_id == meeting.id and case.round == item.round,
               "moved_by": session.get(User, item.moved_by_id) if item.moved_by_id else None,
               "seconded_by": session.get(User, item.seconded_by_id) if item.seconded_by_id else None,
               "met": None, "eligible": [], "recused": [], "non_scientists": 0, "external": 0, "shortfalls": [],
               "voted": 0, "counts": {}}
        if row["current"]:
            record = queries.quorum_record(session, case, rules).as_record()
            votes = queries.tally(session, case, rules)
            row.update(met=record["met"], eligible=record["eligible"], recused=record["recused"],
                       non_scientists=record["non_scientists"], external=record["external"],
                       shortfalls=record["shortfalls"], voted=votes.voted, counts=votes.counts)
            row.update(_quorum_words(row))
        rows.append(row)
    return rows


def _quorum_words(row: dict) -> dict[str, str]:
    """An item's quorum and votes as the page says them, in the reader's language: the page renders them and the
    live indicator (``quorum.json``) replaces them with the same words."""
    return {"quorum_label": _("met") if row["met"] else _("not met"),
            "shortfall_text": "; ".join(say(shortfall) for shortfall in row["shortfalls"]),
            "votes_label": f"{row['voted']} — " + ", ".join(f"{words(meaning)} {n}"
                                                           for meaning, n in row["counts"].items() if n)}


def _meeting_or_404(session, meeting_id: int) -> Meeting:
    found = session.get(Meeting, meeting_id)
    if found is None:
        abort(404)
    return found


@bp.get("/meetings/<id:meeting_id>")
@require_roles(Role.IRB_CHAIR, Role.IRB_MEMBER, Role.ADMIN)
def meeting(meeting_id: int):
    session = get_session()
    found = _meeting_or_404(session, meeting_id)
    attendance = {row.user_id: row for row in session.execute(
        select(MeetingAttendance).where(MeetingAttendance.meeting_id == found.id)).scalars()}
    can_manage = Role.IRB_CHAIR in roles()
    return render_template("chair/meeting.html", meeting=found, members=_members(session), attendance=attendance,
                           agenda=_quorum_rows(session, found), capacities=ATTENDANCE_CAPACITIES,
                           ready=queries.ready_for_board(session) if can_manage and found.status != "closed" else [],
                           minutes=minutes_of(session, found),
                           rule=load_committee_rules(current_app.config["GOVERNANCE"].regulations_dir).full_board,
                           can_manage=can_manage)


@bp.get("/meetings/<id:meeting_id>/quorum.json")
@require_roles(Role.IRB_CHAIR, Role.IRB_MEMBER, Role.ADMIN)
def quorum(meeting_id: int):
    """The live quorum indicator (the page shows the same without JavaScript)."""
    session = get_session()
    found = _meeting_or_404(session, meeting_id)
    return jsonify({"meeting": found.id, "status": found.status, "agenda": [
        {"case": row["case"].id, "met": row["met"], "eligible": len(row["eligible"]), "voted": row["voted"],
         "shortfalls": row["shortfalls"], "counts": row["counts"], "quorum_label": row["quorum_label"],
         "shortfall_text": row["shortfall_text"], "votes_label": row["votes_label"]}
        for row in _quorum_rows(session, found) if row["current"]]})


@bp.post("/meetings/<id:meeting_id>/attendance")
@require_roles(Role.IRB_CHAIR)
def attendance(meeting_id: int):
    session = get_session()
    found = _meeting_or_404(session, meeting_id)
    members = _members(session)
    by_id = {member.id: member for member in members}
    present = set(request.form.getlist("present", type=int))
    capacity = {member.id: request.form.get(f"capacity-{member.id}", "member") for member in members}
    sits_for = {member.id: by_id.get(request.form.get(f"alternate-for-{member.id}", type=int))
                if capacity[member.id] == "alternate" else None for member in members}
    items = {item.id: item for item in queries.agenda(session, found)}
    out_for = {member.id: [items[i] for i in sorted(set(request.form.getlist(f"absent-for-{member.id}", type=int)))
                           if i in items] for member in members}
    known = {row.user_id: row for row in session.execute(
        select(MeetingAttendance).where(MeetingAttendance.meeting_id == found.id)).scalars()}
    try:
        for member in members:
            is_present = member.id in present
            row = known.get(member.id)
            if row is None and not is_present:
                continue
            alternate_for = sits_for[member.id]
            absent_for = out_for[member.id] if is_present else []
            if (row is not None and row.present == is_present and row.capacity == capacity[member.id]
                    and row.alternate_for_id == (alternate_for.id if alternate_for else None)
                    and sorted(row.absent_for_items or []) == [item.id for item in absent_for]):
                continue
            if capacity[member.id] == "alternate" and alternate_for is None:
                raise GovernanceError(_("%(name)s: choose the member the alternate sits for.", name=member.name))
            record_attendance(session, found, member, present=is_present, capacity=capacity[member.id],
                              alternate_for=alternate_for, absent_for=absent_for, actor=me())
    except GovernanceError as exc:
        session.rollback()
        flash(str(exc), "error")
    else:
        flash(_("Attendance recorded."), "success")
    return redirect(url_for("chair.meeting", meeting_id=found.id), code=303)


@bp.post("/meetings/<id:meeting_id>/status")
@require_roles(Role.IRB_CHAIR)
def status(meeting_id: int):
    session = get_session()
    found = _meeting_or_404(session, meeting_id)
    try:
        set_meeting_status(session, found, request.form.get("status", ""), actor=me())
    except GovernanceError as exc:
        session.rollback()
        flash(str(exc), "error")
    return redirect(url_for("chair.meeting", meeting_id=found.id), code=303)


@bp.post("/meetings/<id:meeting_id>/agenda")
@require_roles(Role.IRB_CHAIR)
def agenda_add(meeting_id: int):
    """Put a case that is ready for the board on this meeting's agenda (the workflow's ``schedule_meeting``)."""
    session = get_session()
    found = _meeting_or_404(session, meeting_id)
    case = session.get(Submission, request.form.get("submission", type=int) or 0)
    if case is None:
        abort(404)
    try:
        fire(session, case, "schedule_meeting", me(), {"meeting": found.id},
             settings=current_app.config["GOVERNANCE"])
    except TransitionRefused as refusal:
        session.rollback()
        flash(_("Refused: %(reason)s", reason=refusal_reason(refusal)), "error")
    else:
        flash(_("Case %(case)s is on the agenda.", case=case.id), "success")
    return redirect(url_for("chair.meeting", meeting_id=found.id), code=303)


def _item_or_404(session, meeting: Meeting, item_id: int) -> AgendaItem:
    item = session.get(AgendaItem, item_id)
    if item is None or item.meeting_id != meeting.id:
        abort(404)
    return item


@bp.post("/meetings/<id:meeting_id>/agenda/<id:item_id>/remove")
@require_roles(Role.IRB_CHAIR)
def agenda_remove(meeting_id: int, item_id: int):
    """Take a case off the agenda before anyone voted on it there (the workflow's ``remove_from_agenda``)."""
    session = get_session()
    found = _meeting_or_404(session, meeting_id)
    item = _item_or_404(session, found, item_id)
    case = session.get(Submission, item.submission_id)
    try:
        if case.meeting_id != found.id or case.round != item.round:
            raise GovernanceError(_("This item is settled: its case has moved on."))
        fire(session, case, "remove_from_agenda", me(), {}, settings=current_app.config["GOVERNANCE"])
    except TransitionRefused as refusal:
        session.rollback()
        flash(_("Refused: %(reason)s", reason=refusal_reason(refusal)), "error")
    except GovernanceError as exc:
        session.rollback()
        flash(str(exc), "error")
    else:
        flash(_("Case %(case)s is off the agenda.", case=case.id), "success")
    return redirect(url_for("chair.meeting", meeting_id=found.id), code=303)


@bp.post("/meetings/<id:meeting_id>/agenda/<id:item_id>/motion")
@require_roles(Role.IRB_CHAIR)
def agenda_motion(meeting_id: int, item_id: int):
    """The motion put on an item, who moved it and who seconded it."""
    session = get_session()
    found = _meeting_or_404(session, meeting_id)
    item = _item_or_404(session, found, item_id)
    members = {member.id: member for member in _members(session)}
    moved_by = members.get(request.form.get("moved_by", type=int))
    seconded_by = members.get(request.form.get("seconded_by", type=int))
    motion = (request.form.get("motion") or "")[:NOTE_MAX]
    try:
        record_motion(session, item, motion=motion, moved_by=moved_by, seconded_by=seconded_by, actor=me())
    except GovernanceError as exc:
        session.rollback()
        flash(str(exc), "error")
    else:
        flash(_("Motion recorded."), "success")
    return redirect(url_for("chair.meeting", meeting_id=found.id), code=303)


@bp.post("/meetings/<id:meeting_id>/minutes")
@require_roles(Role.IRB_CHAIR)
def minutes(meeting_id: int):
    """Generate the signed minutes of a closed meeting (a new version beside any earlier one)."""
    session = get_session()
    found = _meeting_or_404(session, meeting_id)
    if found.status != "closed":
        flash(_("Minutes are written once the meeting is closed."), "error")
        return redirect(url_for("chair.meeting", meeting_id=found.id), code=303)
    try:
        emit_minutes(session, current_app.config["GOVERNANCE"], found, actor=me())
    except (GovernanceError, SigningKeyError) as exc:
        session.rollback()
        flash(str(exc), "error")
    else:
        flash(_("Minutes signed and issued."), "success")
    return redirect(url_for("chair.meeting", meeting_id=found.id), code=303)


@bp.get("/meetings/<id:meeting_id>/minutes/<id:dossier_id>")
@require_roles(Role.IRB_CHAIR, Role.IRB_MEMBER, Role.ADMIN)
def minutes_download(meeting_id: int, dossier_id: int):
    session = get_session()
    found = _meeting_or_404(session, meeting_id)
    dossier = session.get(Dossier, dossier_id)
    if dossier is None or dossier.meeting_id != found.id or dossier.gate != "minutes":
        abort(404)
    return send_file(absolute_path(current_app.config["GOVERNANCE"], dossier), mimetype="application/pdf",
                     as_attachment=True, download_name=f"minutes-meeting-{found.id}-{dossier.id}.pdf")
