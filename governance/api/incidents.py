"""Incident endpoints: a clinician's system (or the chair) reports; reporter, owner and oversight read."""

from __future__ import annotations

from datetime import UTC

from flask import current_app, g
from sqlalchemy import select

from .. import eventlog
from ..db import get_session
from ..domain import Role
from ..models import Deployment, Incident, ModelVersion
from ..schemas import IncidentIn
from ..operations.incidents import incident_case, report_incident
from ..permissions import OVERSIGHT_ROLES
from . import schemas as out
from .common import ApiError, parse, require_roles, require_scope, respond, roles
from .openapi import operation


def incident_json(incident: Incident) -> dict:
    session = get_session()
    deployment = session.get(Deployment, incident.deployment_id)
    case = incident_case(session, incident)
    return {"id": incident.id, "deployment_id": incident.deployment_id, "deployment_status": deployment.status,
            "model_version_id": incident.model_version_id, "severity": incident.severity, "source": incident.source,
            "status": incident.status, "patient_harmed": incident.patient_harmed,
            "reported_at": eventlog.format_timestamp(incident.reported_at),
            "adverse_event_required": incident.adverse_event_required,
            "adverse_event_reference": incident.adverse_event_reference or None,
            "case": case.id if case else None, "url": f"/incidents/{incident.id}"}


@operation("post", "/incidents", summary="Report an incident with an AI system (clinician; submit scope); a serious "
           "or critical one has already suspended the deployment when this answers", body=IncidentIn,
           response=out.Incident, status=201, errors=(400, 401, 403, 404, 409))
def create_incident():
    require_scope("submit")
    require_roles(Role.CLINICIAN, Role.IRB_CHAIR)
    payload = parse(IncidentIn)
    session = get_session()
    deployment = session.get(Deployment, payload.deployment_id)
    if deployment is None:  # any system in use may be reported on, so its existence is no secret here
        raise ApiError(404, f"no deployment {payload.deployment_id}", field="deployment_id")
    version = None
    if payload.model_version_id is not None:
        version = session.get(ModelVersion, payload.model_version_id)
        if version is None:
            raise ApiError(404, f"no model version {payload.model_version_id}", field="model_version_id")
    occurred = payload.occurred_at
    if occurred is not None and occurred.tzinfo is None:
        occurred = occurred.replace(tzinfo=UTC)
    incident = report_incident(session, current_app.config["GOVERNANCE"], deployment=deployment,
                               severity=payload.severity.value, what_happened=payload.what_happened, reporter=g.api_user,
                               model_version=version, patient_harmed=payload.patient_harmed,
                               deidentified_example=payload.deidentified_example, occurred_at=occurred)
    return respond(out.Incident, incident_json(incident), 201)


@operation("get", "/incidents/<id:incident_id>", summary="An incident (its reporter, the deployment's owner, "
           "oversight roles)", response=out.Incident, errors=(401, 404))
def get_incident(incident_id: int):
    session = get_session()
    incident = session.get(Incident, incident_id)
    visible = incident is not None and (
        bool(roles() & OVERSIGHT_ROLES) or incident.reporter_id == g.api_user.id
        or session.execute(select(Deployment.owner_id).where(Deployment.id == incident.deployment_id)).scalar()
        == g.api_user.id)
    if not visible:
        raise ApiError(404, f"no incident {incident_id} visible to you")
    return respond(out.Incident, incident_json(incident))
