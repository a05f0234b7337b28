"""The IRB office and chair: the intake queue, full-board meetings with attendance and a live quorum."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from .. import queries
from ..committees import load_committee_rules
from ..db import get_session
from ..domain import Pathway, Role
from ..models import Deployment, Meeting, MeetingAttendance, ModelVersion, RoleAssignment, Submission, User
from ..operations import GovernanceError
from ..operations.meetings import create_meeting, record_attendance, set_meeting_status
from ..workflow import SubmissionState
from .access import me, require_roles, roles
from .forms import MeetingForm
from .listing import paginate

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
    rules = load_committee_rules(current_app.config["GOVERNANCE"].regulations_dir)
    cases = session.execute(select(Submission).where(Submission.meeting_id == meeting.id)
                            .order_by(Submission.id)).scalars().all()
    rows = []
    for case in cases:
        record = queries.quorum_record(session, case, rules).as_record()
        votes = queries.tally(session, case, rules)
        rows.append({"case": case, "met": record["met"], "eligible": record["eligible"], "recused": record["recused"],
                     "non_scientists": record["non_scientists"], "external": record["external"],
                     "shortfalls": record["shortfalls"], "voted": votes.voted, "counts": votes.counts})
    return rows


@bp.get("/meetings/<id:meeting_id>")
@require_roles(Role.IRB_CHAIR, Role.IRB_MEMBER, Role.ADMIN)
def meeting(meeting_id: int):
    session = get_session()
    found = session.get(Meeting, meeting_id)
    if found is None:
        abort(404)
    attendance = {row.user_id: row for row in session.execute(
        select(MeetingAttendance).where(MeetingAttendance.meeting_id == found.id)).scalars()}
    return render_template("chair/meeting.html", meeting=found, members=_members(session), attendance=attendance,
                           agenda=_quorum_rows(session, found),
                           rule=load_committee_rules(current_app.config["GOVERNANCE"].regulations_dir).full_board,
                           can_manage=Role.IRB_CHAIR in roles())


@bp.get("/meetings/<id:meeting_id>/quorum.json")
@require_roles(Role.IRB_CHAIR, Role.IRB_MEMBER, Role.ADMIN)
def quorum(meeting_id: int):
    """The live quorum indicator (the page shows the same without JavaScript)."""
    session = get_session()
    found = session.get(Meeting, meeting_id)
    if found is None:
        abort(404)
    return jsonify({"meeting": found.id, "status": found.status, "agenda": [
        {"case": row["case"].id, "met": row["met"], "eligible": len(row["eligible"]), "voted": row["voted"],
         "shortfalls": row["shortfalls"], "counts": row["counts"]} for row in _quorum_rows(session, found)]})


@bp.post("/meetings/<id:meeting_id>/attendance")
@require_roles(Role.IRB_CHAIR)
def attendance(meeting_id: int):
    session = get_session()
    found = session.get(Meeting, meeting_id)
    if found is None:
        abort(404)
    present = set(request.form.getlist("present", type=int))
    capacity = {member.id: request.form.get(f"capacity-{member.id}", "member") for member in _members(session)}
    known = {row.user_id: row for row in session.execute(
        select(MeetingAttendance).where(MeetingAttendance.meeting_id == found.id)).scalars()}
    try:
        for member in _members(session):
            is_present = member.id in present
            row = known.get(member.id)
            if row is None and not is_present:
                continue
            if row is not None and row.present == is_present and row.capacity == capacity[member.id]:
                continue
            record_attendance(session, found, member, present=is_present, capacity=capacity[member.id], actor=me())
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
    found = session.get(Meeting, meeting_id)
    if found is None:
        abort(404)
    try:
        set_meeting_status(session, found, request.form.get("status", ""), actor=me())
    except GovernanceError as exc:
        session.rollback()
        flash(str(exc), "error")
    return redirect(url_for("chair.meeting", meeting_id=found.id), code=303)
