"""Incidents: clinicians report them; the chair, compliance and the system's owner follow them."""

from __future__ import annotations

from datetime import UTC, datetime, time

from flask import Blueprint, abort, current_app, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import login_required
from sqlalchemy import select

from ..db import get_session
from ..inputs import accepts_documents
from ..operations.documents import documents_of, subject_of
from ..domain import Role, Severity
from ..models import Deployment, Incident, ModelVersion, User
from ..monitoring.policy import load_monitoring
from ..operations import GovernanceError
from ..operations.incidents import REPORTABLE, adverse_event_due, incident_case, record_adverse_event_report, report_incident
from ..permissions import can_see, incident_visibility_clause
from .access import me, require_roles, roles
from .documents import attach_uploaded, document_form, document_types, may_attach, uploaders
from .forms import SEVERITY_MEANINGS, AdverseEventForm, IncidentForm, opts
from .listing import paginate
from .vocabulary import words

bp = Blueprint("incidents", __name__, url_prefix="/incidents")
REPORTERS = (Role.CLINICIAN, Role.IRB_CHAIR)


def _clause():
    """Incidents the signed-in user may see (see :func:`governance.permissions.incident_visibility_clause`)."""
    return incident_visibility_clause(get_session(), me())


def _visible(incident_id: int) -> Incident:
    found = get_session().execute(select(Incident).join(Deployment, Deployment.id == Incident.deployment_id)
                                  .where(Incident.id == incident_id, _clause())).scalars().first()
    if found is None:
        abort(404)
    return found


@bp.get("")
@login_required
def index():
    session = get_session()
    query = (select(Incident, Deployment.name, User.name.label("reporter"))
             .join(Deployment, Deployment.id == Incident.deployment_id)
             .outerjoin(User, User.id == Incident.reporter_id).where(_clause()))
    page = paginate(session, query, {"reported": Incident.reported_at, "severity": Incident.severity,
                                     "status": Incident.status, "deployment": Deployment.name}, "reported")
    return render_template("incidents/index.html", page=page, can_report=bool(roles() & set(REPORTERS)))


def _form() -> IncidentForm:
    session = get_session()
    form = IncidentForm()
    deployments = session.execute(select(Deployment.id, Deployment.name, Deployment.status)
                                  .where(Deployment.status.in_([s.value for s in REPORTABLE]))
                                  .order_by(Deployment.name)).all()
    form.deployment_id.choices = opts([(d.id, f"{d.name} ({words(d.status)})") for d in deployments])
    versions = session.execute(select(ModelVersion.id, ModelVersion.version_label, Deployment.name)
                               .join(Deployment, Deployment.id == ModelVersion.deployment_id)
                               .where(Deployment.status.in_([s.value for s in REPORTABLE]))
                               .order_by(Deployment.name, ModelVersion.id.desc())).all()
    form.model_version_id.choices = opts([(0, _("the approved version"))] +
                                         [(v.id, f"{v.name} — {v.version_label}") for v in versions])
    suspending = _suspending()
    form.severity.choices = opts([(severity.value, _("%(meaning)s (suspends the system)", meaning=SEVERITY_MEANINGS[
        severity]) if severity in suspending else SEVERITY_MEANINGS[severity]) for severity in Severity])
    return form


def _suspending() -> set[str]:
    """The severities that suspend a deployment at once (data: regulations/monitoring.yaml)."""
    return set(load_monitoring(current_app.config["GOVERNANCE"].regulations_dir).incidents.suspend_severities)


@bp.route("/new", methods=["GET", "POST"])
@require_roles(*REPORTERS)
def new():
    session = get_session()
    form = _form()
    if form.validate_on_submit():
        deployment = session.get(Deployment, form.deployment_id.data)
        version = session.get(ModelVersion, form.model_version_id.data) if form.model_version_id.data else None
        occurred = datetime.combine(form.occurred_at.data, time(12), tzinfo=UTC) if form.occurred_at.data else None
        try:
            if deployment is None:
                raise GovernanceError(_("Choose the AI system."))
            incident = report_incident(session, current_app.config["GOVERNANCE"], deployment=deployment,
                                       severity=form.severity.data, what_happened=form.what_happened.data,
                                       reporter=me(), model_version=version, patient_harmed=form.patient_harmed.data,
                                       deidentified_example=form.deidentified_example.data or "",
                                       occurred_at=occurred)
        except GovernanceError as exc:
            session.rollback()
            flash(_("Not reported: %(reason)s", reason=str(exc)), "error")
        else:
            message = _("Incident #%(id)s reported. The IRB office has been notified.", id=incident.id)
            if deployment.status == "suspended" and form.severity.data in _suspending():
                message += " " + _("%(name)s is suspended until the chair reinstates it.", name=deployment.name)
            flash(message, "success")
            return redirect(url_for("incidents.show", incident_id=incident.id), code=303)
    return render_template("incidents/new.html", form=form)


@bp.get("/<id:incident_id>")
@login_required
def show(incident_id: int):
    session = get_session()
    incident = _visible(incident_id)
    deployment = session.get(Deployment, incident.deployment_id)
    case = incident_case(session, incident)
    due = adverse_event_due(current_app.config["GOVERNANCE"], deployment, incident.severity, incident.patient_harmed,
                            incident.reported_at) if incident.adverse_event_required else None
    documents = documents_of(session, subject_of(session, incident))
    return render_template("incidents/show.html", incident=incident, deployment=deployment, documents=documents,
                           document_uploaders=uploaders(documents), document_types=document_types(),
                           document_form=document_form() if may_attach(incident) else None,
                           version=session.get(ModelVersion, incident.model_version_id),
                           reporter=session.get(User, incident.reporter_id) if incident.reporter_id else None,
                           case=case if case is not None and can_see(session, me(), case) else None,
                           adverse_event_due=due, form=AdverseEventForm(),
                           can_record=bool(roles() & {Role.COMPLIANCE_OFFICER, Role.IRB_CHAIR}))


@bp.post("/<id:incident_id>/adverse-event")
@require_roles(Role.COMPLIANCE_OFFICER, Role.IRB_CHAIR)
def adverse_event(incident_id: int):
    session = get_session()
    incident = _visible(incident_id)
    form = AdverseEventForm()
    if not form.validate_on_submit():
        flash(_("Not recorded: the report number is required."), "error")
    else:
        try:
            record_adverse_event_report(session, incident, form.reference.data, actor=me())
        except GovernanceError as exc:
            session.rollback()
            flash(str(exc), "error")
        else:
            flash(_("Report number recorded."), "success")
    return redirect(url_for("incidents.show", incident_id=incident.id), code=303)


@bp.post("/<id:incident_id>/documents")
@accepts_documents
@login_required
def attach_document(incident_id: int):
    """Attach evidence to an incident (its reporter, the deployment's owner, the IRB office and committees)."""
    incident = _visible(incident_id)
    return attach_uploaded(incident, url_for("incidents.show", incident_id=incident.id, _anchor="documents"))
