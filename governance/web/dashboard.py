"""The dashboard (what needs me now, and the cases I may see by state) and the paginated case list."""

from __future__ import annotations

from datetime import date, timedelta

from flask import Blueprint, render_template, request
from flask_login import login_required
from sqlalchemy import and_, func, select

from ..db import get_session
from ..domain import Role
from ..models import Assignment, Deployment, Incident, ModelVersion, Notification, Submission, User, Vote
from ..permissions import visibility_clause
from ..workflow import SubmissionState
from .access import me, roles
from .listing import paginate

bp = Blueprint("dashboard", __name__)
PER_STATE = 10


def _joined(query):
    return (query.join(Deployment, Deployment.id == Submission.deployment_id)
            .join(ModelVersion, ModelVersion.id == Submission.model_version_id))


@bp.get("/")
@login_required
def index():
    session = get_session()
    user = me()
    visible = visibility_clause(session, user)
    counts = dict(session.execute(select(Submission.state, func.count(Submission.id)).where(visible)
                                  .group_by(Submission.state)).all())
    groups = []
    for state in SubmissionState:
        if not counts.get(state.value):
            continue
        rows = session.execute(_joined(select(Submission, Deployment.name, ModelVersion.version_label))
                               .where(visible, Submission.state == state.value)
                               .order_by(Submission.updated_at.desc(), Submission.id.desc()).limit(PER_STATE)).all()
        groups.append({"state": state.value, "count": counts[state.value], "rows": rows})
    mine = roles()
    todo = {}
    if mine & {Role.IRB_MEMBER, Role.AI_SUBCOMMITTEE_MEMBER, Role.IRB_CHAIR}:
        voted = select(Vote.id).where(Vote.submission_id == Submission.id, Vote.voter_id == user.id,
                                      Vote.round == Submission.round).exists()
        todo["reviews"] = session.execute(
            _joined(select(Submission, Deployment.name, ModelVersion.version_label, Assignment.due_date))
            .join(Assignment, and_(Assignment.submission_id == Submission.id, Assignment.reviewer_id == user.id))
            .where(Submission.state == SubmissionState.IN_REVIEW, ~voted)
            .order_by(Assignment.due_date.asc().nulls_last()).limit(10)).all()
    if Role.IRB_CHAIR in mine:
        todo["intake"] = session.execute(select(Submission.state, func.count(Submission.id))
                                         .where(Submission.state.in_(["submitted", "screening", "classified", "held"]))
                                         .group_by(Submission.state)).all()
        soon = date.today() + timedelta(days=60)
        todo["due"] = session.execute(select(Deployment).where(Deployment.continuing_review_due <= soon,
                                                               Deployment.status == "active")
                                      .order_by(Deployment.continuing_review_due).limit(10)).scalars().all()
    if mine & {Role.IRB_CHAIR, Role.COMPLIANCE_OFFICER}:
        todo["incidents"] = session.execute(
            select(Incident, Deployment.name).join(Deployment, Deployment.id == Incident.deployment_id)
            .where(Incident.status != "closed").order_by(Incident.id.desc()).limit(10)).all()
        todo["suspended"] = session.execute(select(Deployment).where(Deployment.status == "suspended")
                                            .order_by(Deployment.updated_at.desc()).limit(10)).scalars().all()
    if Role.CLINICIAN in mine:
        todo["my_incidents"] = session.execute(
            select(Incident, Deployment.name).join(Deployment, Deployment.id == Incident.deployment_id)
            .where(Incident.reporter_id == user.id).order_by(Incident.id.desc()).limit(10)).all()
    if Role.SUBMITTER in mine:
        todo["returned"] = session.execute(
            _joined(select(Submission, Deployment.name, ModelVersion.version_label))
            .where(Submission.submitter_id == user.id,
                   Submission.state.in_(["returned", "revisions_required", "held", "draft"]))
            .order_by(Submission.updated_at.desc()).limit(10)).all()
    notifications = session.execute(select(Notification).where(Notification.user_id == user.id,
                                                               Notification.read_at.is_(None))
                                    .order_by(Notification.id.desc()).limit(10)).scalars().all()
    return render_template("dashboard.html", groups=groups, total=sum(counts.values()), todo=todo,
                           notifications=notifications)


@bp.get("/cases")
@login_required
def cases():
    session = get_session()
    query = (_joined(select(Submission, Deployment.name, ModelVersion.version_label, User.name.label("submitter")))
             .join(User, User.id == Submission.submitter_id).where(visibility_clause(session, me())))
    for name in ("state", "kind", "pathway"):
        value = request.args.get(name)
        if value:
            query = query.where(getattr(Submission, name) == value)
    page = paginate(session, query, {"case": Submission.id, "updated": Submission.updated_at, "state": Submission.state,
                                     "kind": Submission.kind, "deployment": Deployment.name}, "updated")
    return render_template("cases.html", page=page, states=[s.value for s in SubmissionState],
                           filters={k: request.args.get(k, "") for k in ("state", "kind", "pathway")})
