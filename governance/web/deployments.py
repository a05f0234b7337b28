"""Submitters' pages: register a deployment (the descriptor as a guided form), submit model versions and
updates, follow each deployment."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import login_required
from sqlalchemy import func, select

from .. import queries
from ..classification.descriptor import descriptor_from_dict
from ..classification.engine import classify
from ..classification.rules import load_ruleset
from ..datafiles import DataFileError
from ..db import get_session
from ..domain import TERMINAL_STATES, Role
from ..errors import NotPermitted
from ..models import ApprovalCondition, Deployment, Dossier, Event, Incident, ModelVersion, Submission, User, utcnow
from ..operations.conditions import conditions_of, meet_condition, waive_condition
from ..operations.documents import deployment_documents
from ..monitoring.trends import accuracy_trend, live_watch
from ..operations import GovernanceError, TransitionRefused, actions_for
from ..operations.cases import (REVISABLE_STATES, open_continuing_review, propose_amendment, register_deployment,
                                revise_amendment, submit_model_version, update_descriptor)
from ..permissions import can_manage_deployment, deployment_visibility_clause, visibility_clause
from .access import me, require_roles, roles
from .actions import fire_posted_action, refusal_reason
from .documents import deployment_document_form, document_types, may_attach, readable, uploaders
from .forms import (AmendmentForm, ConditionCloseForm, ConfirmForm, DescriptorForm, VersionForm, action_form_class,
                    demo_endpoint_choices)
from .listing import paginate

bp = Blueprint("deployments", __name__, url_prefix="/deployments")


def _visible(deployment_id: int) -> Deployment:
    session = get_session()
    found = session.execute(select(Deployment).where(Deployment.id == deployment_id,
                                                     deployment_visibility_clause(session, me()))).scalars().first()
    if found is None:
        abort(404)
    return found


def _managed(deployment_id: int, refusal: str) -> Deployment:
    """A deployment the signed-in user may manage (its owner or the chair); others get 403 with ``refusal``."""
    deployment = _visible(deployment_id)
    if not can_manage_deployment(get_session(), me(), deployment):
        abort(403, description=refusal)
    return deployment


@bp.get("/")
@login_required
def index():
    session = get_session()
    open_cases = (select(func.count(Submission.id)).where(Submission.deployment_id == Deployment.id,
                                                          Submission.state.not_in(list(TERMINAL_STATES)))
                  .correlate(Deployment).scalar_subquery())
    query = (select(Deployment, ModelVersion.version_label, User.name, open_cases.label("open_cases"))
             .outerjoin(ModelVersion, ModelVersion.id == Deployment.approved_version_id)
             .join(User, User.id == Deployment.owner_id).where(deployment_visibility_clause(session, me())))
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
    watch = live_watch(session, deployment)
    conditions = conditions_of(session, deployment)
    settings = current_app.config["GOVERNANCE"]
    actions = actions_for(session, deployment, me(), settings)
    forms = {a.transition.event: action_form_class(a.transition)(prefix=a.transition.event) for a in actions
             if a.allowed}
    incidents = session.execute(select(Incident).where(Incident.deployment_id == deployment.id)
                                .order_by(Incident.id.desc()).limit(50)).scalars().all()
    is_owner = deployment.owner_id == me().id
    can_manage = can_manage_deployment(session, me(), deployment)
    visible_cases = {c.id for c in cases}
    documents = readable([d for d in deployment_documents(session, deployment)
                          if d.submission_id is None or d.submission_id in visible_cases])
    return render_template("deployments/show.html", deployment=deployment, versions=versions, cases=cases,
                           documents=documents, document_uploaders=uploaders(documents),
                           document_types=document_types(),
                           document_form=deployment_document_form(deployment) if may_attach(deployment) else None,
                           history=history, dossiers=dossiers, preview=preview, trend=trend, actions=actions,
                           forms=forms, incidents=incidents, watch=watch, conditions=conditions,
                           condition_form=ConditionCloseForm, today=utcnow().date(),
                           may_close=lambda c: c.owner_id == me().id or Role.IRB_CHAIR in roles(),
                           is_chair=Role.IRB_CHAIR in roles(), suspension=queries.latest_suspension(session, deployment)
                           if deployment.status == "suspended" else None,
                           open_continuing=queries.open_continuing_review(session, deployment),
                           open_amendment=queries.open_amendment(session, deployment),
                           can_open_continuing=can_manage and deployment.approved_version_id is not None
                           and deployment.status in {"active", "suspended", "expired"},
                           is_owner=is_owner, can_edit=can_manage)


@bp.post("/<id:deployment_id>/events/<event>")
@login_required
def act(deployment_id: int, event: str):
    """Suspend, reinstate or retire (the chair; retire also the admin): the engine checks roles and guards."""
    deployment = _visible(deployment_id)
    return fire_posted_action(deployment, event, url_for("deployments.show", deployment_id=deployment.id))


@bp.post("/<id:deployment_id>/conditions/<id:condition_id>/<any(meet, waive):action>")
@login_required
def close_condition(deployment_id: int, condition_id: int, action: str):
    """Record a condition of approval met (its owner or the chair, with evidence) or waived (the chair)."""
    deployment = _visible(deployment_id)
    condition = get_session().get(ApprovalCondition, condition_id)
    if condition is None or condition.deployment_id != deployment.id:
        abort(404)
    form = ConditionCloseForm(prefix=f"condition{condition.id}")
    back = url_for("deployments.show", deployment_id=deployment.id, _anchor="conditions")
    if not form.validate_on_submit():
        flash(_("Say what shows it (at least 10 characters)."), "error")
        return redirect(back, code=303)
    closing = meet_condition if action == "meet" else waive_condition
    try:
        closing(get_session(), condition, form.text.data, actor=me(), now=utcnow())
    except NotPermitted:
        raise  # the app's handler: rolled back, 403
    except GovernanceError as exc:
        get_session().rollback()
        flash(str(exc), "error")
        return redirect(back, code=303)
    flash(_("Condition %(number)s recorded as %(status)s.", number=condition.number, status=_(condition.status)),
          "success")
    return redirect(back, code=303)


@bp.post("/<id:deployment_id>/continuing")
@require_roles(Role.SUBMITTER, Role.IRB_CHAIR)
def open_continuing(deployment_id: int):
    """Open the continuing-review case of an approved deployment (in draft, for its owner to complete)."""
    deployment = _managed(deployment_id, _("Only the deployment's owner or the chair opens its continuing review."))
    if not ConfirmForm().validate_on_submit():
        abort(400)
    if deployment.approved_version_id is None:
        flash(_("Only an approved deployment has a continuing review."), "error")
        return redirect(url_for("deployments.show", deployment_id=deployment.id), code=303)
    case, created = open_continuing_review(get_session(), deployment, actor=me())
    if not created:
        flash(_("Continuing review #%(id)s is already open.", id=case.id), "info")
    else:
        flash(_("Continuing review #%(id)s opened in draft: describe the use since approval and submit it.",
                id=case.id), "success")
    return redirect(url_for("cases.show", submission_id=case.id), code=303)


@bp.route("/<id:deployment_id>/edit", methods=["GET", "POST"])
@require_roles(Role.SUBMITTER, Role.IRB_CHAIR)
def edit(deployment_id: int):
    """Edit the descriptor of a deployment never approved; for an approved one, propose an amendment (a case for the
    committee: the approved scope stays in force until the amendment is approved), or revise the amendment that
    was returned to its submitter."""
    session = get_session()
    deployment = _managed(deployment_id, _("Only the deployment's owner or the chair may change its descriptor."))
    amending = queries.has_approved_scope(deployment)
    pending = queries.open_amendment(session, deployment) if amending else None
    revising = pending if pending is not None and pending.state in REVISABLE_STATES and \
        pending.submitter_id == me().id else None
    form = AmendmentForm() if amending and revising is None else DescriptorForm()
    if request.method == "GET":
        form.fill(revising.proposed_descriptor if revising is not None else deployment.descriptor)
    elif form.validate_on_submit():
        try:
            if revising is not None:
                revise_amendment(session, revising, form.descriptor(), actor=me())
            elif amending:
                case = propose_amendment(session, current_app.config["GOVERNANCE"], deployment, form.descriptor(),
                                         actor=me(), summary=form.summary.data or "")
            else:
                update_descriptor(session, deployment, form.descriptor(), actor=me())
        except TransitionRefused as refusal:
            session.rollback()
            flash(_("Not submitted: %(reason)s", reason=refusal_reason(refusal)), "error")
        except GovernanceError as exc:
            session.rollback()
            flash(str(exc), "error")
        else:
            if revising is not None:
                flash(_("Amendment #%(id)s revised; resubmit it when it is ready.", id=revising.id), "success")
                return redirect(url_for("cases.show", submission_id=revising.id), code=303)
            if amending:
                flash(_("Amendment #%(id)s submitted for committee review; the approved scope stays in force until "
                        "it is approved.", id=case.id), "success")
                return redirect(url_for("cases.show", submission_id=case.id), code=303)
            flash(_("Descriptor updated; the next submission is classified against it."), "success")
            return redirect(url_for("deployments.show", deployment_id=deployment.id), code=303)
    return render_template("deployments/new.html", form=form, preview=_preview(form), deployment=deployment,
                           amending=amending, open_amendment=pending, revising=revising)


@bp.route("/<id:deployment_id>/versions/new", methods=["GET", "POST"])
@require_roles(Role.SUBMITTER, Role.IRB_CHAIR)
def new_version(deployment_id: int):
    session = get_session()
    deployment = _managed(deployment_id, _("Only the deployment's owner submits its model versions."))
    form = VersionForm()  # the kind of review starts unchosen: the submitter says whether this is a change
    approved = queries.approved_version(session, deployment)
    if request.method == "GET" and approved is not None:
        form.fill_from(approved)
    if form.validate_on_submit():
        try:
            case = submit_model_version(
                session, current_app.config["GOVERNANCE"], deployment, actor=me(), version=form.version_fields(),
                kind=form.kind.data, title=f"{deployment.name} {form.version_label.data.strip()} — {form.kind.data}",
                summary=form.summary.data or "", submit=form.submit_now.data)
        except TransitionRefused as refusal:
            session.rollback()
            flash(_("Not submitted: %(reason)s", reason=refusal_reason(refusal)), "error")
        except GovernanceError as exc:
            session.rollback()
            flash(str(exc), "error")
        else:
            flash(_("Case #%(id)s created.", id=case.id), "success")
            return redirect(url_for("cases.show", submission_id=case.id), code=303)
    return render_template("deployments/version.html", form=form, deployment=deployment,
                           demo_endpoints=demo_endpoint_choices(current_app.config["GOVERNANCE"]))
