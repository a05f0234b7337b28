"""Submitters' pages: register a deployment (the descriptor as a guided form), submit model versions and
updates, follow each deployment."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import login_required
from sqlalchemy import exists, func, or_, select

from ..classification.descriptor import descriptor_from_dict
from ..classification.engine import classify
from ..classification.rules import load_ruleset
from ..datafiles import DataFileError
from ..db import get_session
from ..domain import Role
from .. import queries
from ..domain import SubmissionKind
from ..models import Deployment, Dossier, Event, Incident, ModelVersion, Submission, User
from ..monitoring.trends import accuracy_trend
from ..operations import GovernanceError, TransitionRefused, actions_for, fire
from ..workflow import OPEN_STATES
from ..operations.cases import add_model_version, open_submission, register_deployment, update_descriptor
from ..permissions import OVERSIGHT_ROLES, visibility_clause
from .access import me, require_roles, roles
from .actions import fire_posted_action
from .forms import ConfirmForm, DescriptorForm, VersionForm, action_form_class
from .listing import paginate

bp = Blueprint("deployments", __name__, url_prefix="/deployments")


def deployment_clause(session, user):
    """Deployments a user may see: their own, those of cases they may see, or all for oversight roles."""
    if roles() & OVERSIGHT_ROLES:
        return Deployment.id.is_not(None)
    return or_(Deployment.owner_id == user.id,
               exists().where(Submission.deployment_id == Deployment.id, visibility_clause(session, user)))


def _visible(deployment_id: int) -> Deployment:
    session = get_session()
    found = session.execute(select(Deployment).where(Deployment.id == deployment_id,
                                                     deployment_clause(session, me()))).scalars().first()
    if found is None:
        abort(404)
    return found


@bp.get("/")
@login_required
def index():
    session = get_session()
    open_cases = (select(func.count(Submission.id)).where(Submission.deployment_id == Deployment.id,
                                                          Submission.state.not_in(["approved", "approved_with_conditions",
                                                                                   "disapproved", "withdrawn"]))
                  .correlate(Deployment).scalar_subquery())
    query = (select(Deployment, ModelVersion.version_label, User.name, open_cases.label("open_cases"))
             .outerjoin(ModelVersion, ModelVersion.id == Deployment.approved_version_id)
             .join(User, User.id == Deployment.owner_id).where(deployment_clause(session, me())))
    page = paginate(session, query, {"name": Deployment.name, "status": Deployment.status,
                                     "updated": Deployment.updated_at, "due": Deployment.continuing_review_due},
                    "updated")
    return render_template("deployments/index.html", page=page,
                           can_register=bool(roles() & {Role.SUBMITTER, Role.IRB_CHAIR}))


@bp.route("/new", methods=["GET", "POST"])
@require_roles(Role.SUBMITTER, Role.IRB_CHAIR)
def new():
    form = DescriptorForm()
    if form.validate_on_submit():
        try:
            created = register_deployment(get_session(), form.descriptor(), owner=me())
        except GovernanceError as exc:
            flash(str(exc), "error")
        else:
            flash(_("Deployment registered. Submit its first model version for review."), "success")
            return redirect(url_for("deployments.new_version", deployment_id=created.id), code=303)
    return render_template("deployments/new.html", form=form, preview=_preview(form))


def _preview(form: DescriptorForm) -> dict | None:
    """The classification the descriptor would get, shown beside the form (nothing is stored)."""
    if request.method != "POST" or form.errors:
        return None
    try:
        descriptor = descriptor_from_dict(form.descriptor())
    except DataFileError:
        return None
    return classify(descriptor, load_ruleset(current_app.config["GOVERNANCE"].regulations_dir))


@bp.get("/<id:deployment_id>")
@login_required
def show(deployment_id: int):
    session = get_session()
    deployment = _visible(deployment_id)
    versions = session.execute(select(ModelVersion).where(ModelVersion.deployment_id == deployment.id)
                               .order_by(ModelVersion.id.desc())).scalars().all()
    cases = session.execute(select(Submission).where(Submission.deployment_id == deployment.id,
                                                     visibility_clause(session, me()))
                            .order_by(Submission.id.desc())).scalars().all()
    history = session.execute(select(Event).where(Event.deployment_id == deployment.id, Event.submission_id.is_(None))
                              .order_by(Event.seq.desc()).limit(50)).scalars().all()
    dossiers = session.execute(select(Dossier).where(Dossier.deployment_id == deployment.id,
                                                     Dossier.submission_id.in_([c.id for c in cases]))
                               .order_by(Dossier.id.desc())).scalars().all() if cases else []
    preview = classify(descriptor_from_dict(deployment.descriptor),
                       load_ruleset(current_app.config["GOVERNANCE"].regulations_dir))
    trend = accuracy_trend(session, deployment)
    settings = current_app.config["GOVERNANCE"]
    actions = actions_for(session, deployment, me(), settings)
    forms = {a.transition.event: action_form_class(a.transition)(prefix=a.transition.event) for a in actions
             if a.allowed}
    incidents = session.execute(select(Incident).where(Incident.deployment_id == deployment.id)
                                .order_by(Incident.id.desc()).limit(50)).scalars().all()
    is_owner = deployment.owner_id == me().id
    return render_template("deployments/show.html", deployment=deployment, versions=versions, cases=cases,
                           history=history, dossiers=dossiers, preview=preview, trend=trend, actions=actions,
                           forms=forms, incidents=incidents, suspension=queries.latest_suspension(session, deployment)
                           if deployment.status == "suspended" else None,
                           open_continuing=_open_continuing(session, deployment),
                           can_open_continuing=(is_owner or Role.IRB_CHAIR in roles())
                           and deployment.approved_version_id is not None
                           and deployment.status in {"active", "suspended", "expired"},
                           is_owner=is_owner, can_edit=is_owner or Role.IRB_CHAIR in roles())


def _open_continuing(session, deployment: Deployment) -> Submission | None:
    return session.execute(select(Submission).where(
        Submission.deployment_id == deployment.id, Submission.kind == SubmissionKind.CONTINUING,
        Submission.state.in_([s.value for s in OPEN_STATES])).order_by(Submission.id.desc()).limit(1)).scalars().first()


@bp.post("/<id:deployment_id>/events/<event>")
@login_required
def act(deployment_id: int, event: str):
    """Suspend, reinstate or retire (the chair; retire also the admin): the engine checks roles and guards."""
    deployment = _visible(deployment_id)
    return fire_posted_action(deployment, event, url_for("deployments.show", deployment_id=deployment.id))


@bp.post("/<id:deployment_id>/continuing")
@require_roles(Role.SUBMITTER, Role.IRB_CHAIR)
def open_continuing(deployment_id: int):
    """Open the continuing-review case of an approved deployment (in draft, for its owner to complete)."""
    session = get_session()
    deployment = _visible(deployment_id)
    if deployment.owner_id != me().id and Role.IRB_CHAIR not in roles():
        abort(403, description=_("Only the deployment's owner or the chair opens its continuing review."))
    if not ConfirmForm().validate_on_submit():
        abort(400)
    existing = _open_continuing(session, deployment)
    if existing is not None:
        flash(_("Continuing review #%(id)s is already open.", id=existing.id), "info")
        return redirect(url_for("cases.show", submission_id=existing.id), code=303)
    if deployment.approved_version_id is None:
        flash(_("Only an approved deployment has a continuing review."), "error")
        return redirect(url_for("deployments.show", deployment_id=deployment.id), code=303)
    owner = session.get(User, deployment.owner_id)
    case = open_submission(session, kind=SubmissionKind.CONTINUING.value, deployment=deployment,
                           model_version=session.get(ModelVersion, deployment.approved_version_id), submitter=owner,
                           title=f"{deployment.name} — continuing review", summary="")
    flash(_("Continuing review #%(id)s opened in draft: describe the use since approval and submit it.", id=case.id),
          "success")
    return redirect(url_for("cases.show", submission_id=case.id), code=303)


@bp.route("/<id:deployment_id>/edit", methods=["GET", "POST"])
@require_roles(Role.SUBMITTER, Role.IRB_CHAIR)
def edit(deployment_id: int):
    deployment = _visible(deployment_id)
    if deployment.owner_id != me().id and Role.IRB_CHAIR not in roles():
        abort(403, description=_("Only the deployment's owner or the chair may change its descriptor."))
    form = DescriptorForm()
    if request.method == "GET":
        form.fill(deployment.descriptor)
    elif form.validate_on_submit():
        try:
            update_descriptor(get_session(), deployment, form.descriptor(), actor=me())
        except GovernanceError as exc:
            flash(str(exc), "error")
        else:
            flash(_("Descriptor updated; the next submission is classified against it."), "success")
            return redirect(url_for("deployments.show", deployment_id=deployment.id), code=303)
    return render_template("deployments/new.html", form=form, preview=_preview(form), deployment=deployment)


@bp.route("/<id:deployment_id>/versions/new", methods=["GET", "POST"])
@require_roles(Role.SUBMITTER, Role.IRB_CHAIR)
def new_version(deployment_id: int):
    session = get_session()
    deployment = _visible(deployment_id)
    if deployment.owner_id != me().id and Role.IRB_CHAIR not in roles():
        abort(403, description=_("Only the deployment's owner submits its model versions."))
    form = VersionForm()
    if request.method == "GET":
        form.kind.data = "change" if deployment.approved_version_id else "initial"
    if form.validate_on_submit():
        categories = [c.strip() for c in (form.finetune_data_categories.data or "").split(",") if c.strip()]
        try:
            version = add_model_version(
                session, deployment, actor=me(), version_label=form.version_label.data,
                base_model=form.base_model.data, architecture=form.architecture.data or "",
                weights_digest=form.weights_digest.data, tokenizer_digest=form.tokenizer_digest.data or "",
                system_prompt_digest=form.system_prompt_digest.data or "", quantization=form.quantization.data or "",
                endpoint=form.endpoint.data, served_model_id=form.served_model_id.data or "",
                finetune_data_summary=form.finetune_data_summary.data or "", finetune_data_categories=categories,
                change_summary=form.change_summary.data or "")
            case = open_submission(session, kind=form.kind.data, deployment=deployment, model_version=version,
                                   submitter=me(), title=f"{deployment.name} {version.version_label} — {form.kind.data}",
                                   summary=form.summary.data or "")
            if form.submit_now.data:
                fire(session, case, "submit", me(), settings=current_app.config["GOVERNANCE"])
        except TransitionRefused as refusal:
            session.rollback()
            flash(_("Not submitted: %(reason)s", reason=refusal.reason), "error")
        except GovernanceError as exc:
            session.rollback()
            flash(str(exc), "error")
        else:
            flash(_("Case #%(id)s created.", id=case.id), "success")
            return redirect(url_for("cases.show", submission_id=case.id), code=303)
    return render_template("deployments/version.html", form=form, deployment=deployment)
