"""API endpoints. Inputs are validated by pydantic models that reject unknown keys; every write goes
through the same operations and workflow engine as the pages."""

from __future__ import annotations

from typing import Any

from flask import current_app, g, jsonify, request, send_file
from sqlalchemy import select

from .. import eventlog, queries
from ..db import get_session
from ..domain import Role
from ..models import Decision, Deployment, Dossier, Event, ModelVersion, Submission
from ..operations import fire
from ..operations.cases import register_deployment, submit_model_version
from ..operations.dossiers import absolute_path
from ..permissions import can_see, can_see_deployment
from ..schemas import EventIn, SubmissionIn
from ..workflow import SUBMISSIONS, DeploymentStatus
from .common import ApiError, Strict, bp, int_arg, parse, require_roles, require_scope, respond, roles
from . import schemas as out
from .openapi import operation, spec

DEPLOYMENT_EVENTS = ("activate", "suspend", "reinstate", "renew", "expire", "retire")
MAX_PAGE = 100_000


class DeploymentIn(Strict):
    descriptor: dict[str, Any]


def _case(submission_id: int) -> Submission:
    found = get_session().get(Submission, submission_id)
    if found is None or not can_see(get_session(), g.api_user, found):
        raise ApiError(404, f"no submission {submission_id} visible to you")
    return found


def _deployment(deployment_id: int) -> Deployment:
    session = get_session()
    found = session.get(Deployment, deployment_id)
    if found is None or not can_see_deployment(session, g.api_user, found):
        raise ApiError(404, f"no deployment {deployment_id} visible to you")
    return found


def deployment_json(deployment: Deployment) -> dict[str, Any]:
    version = get_session().get(ModelVersion, deployment.approved_version_id) if deployment.approved_version_id else None
    return {"id": deployment.id, "name": deployment.name, "scenario": deployment.scenario, "status": deployment.status,
            "nmpa_status": deployment.nmpa_status, "descriptor": deployment.descriptor,
            "approved_version": {"id": version.id, "label": version.version_label,
                                 "weights_digest": version.weights_digest} if version else None,
            "continuing_review_due": deployment.continuing_review_due.isoformat()
            if deployment.continuing_review_due else None}


def dossier_json(dossier: Dossier) -> dict[str, Any]:
    return {"id": dossier.id, "submission": dossier.submission_id, "gate": dossier.gate, "sha256": dossier.sha256,
            "pages": dossier.page_count, "created_at": eventlog.format_timestamp(dossier.created_at),
            "signer_fingerprint": dossier.signer_fingerprint, "pdf": f"/api/v1/dossiers/{dossier.id}/pdf"}


def submission_json(case: Submission) -> dict[str, Any]:
    session = get_session()
    version = session.get(ModelVersion, case.model_version_id)
    run = queries.latest_audit(session, case)
    decision = session.execute(select(Decision).where(Decision.submission_id == case.id)
                               .order_by(Decision.id.desc()).limit(1)).scalars().first()
    dossiers = session.execute(select(Dossier).where(Dossier.submission_id == case.id)
                               .order_by(Dossier.id)).scalars().all()
    audit = None
    if run is not None:
        summary = run.summary or {}
        criteria = summary.get("criteria") or (summary.get("verdict_detail") or {}).get("criteria", [])
        audit = {"id": run.id, "status": run.status, "done": run.items_done, "total": run.items_total,
                 "percent": round(100 * run.items_done / run.items_total) if run.items_total else 0,
                 "verdict": run.verdict, "reasons": run.verdict_reasons, "demo": run.demo,
                 "criteria": criteria, "accuracy": (summary.get("overall") or {}).get("accuracy"),
                 "error": run.error or None}
    return {"id": case.id, "kind": case.kind, "title": case.title, "state": case.state, "pathway": case.pathway,
            "materiality": case.materiality, "round": case.round, "lock_version": case.lock_version,
            "deployment_id": case.deployment_id,
            "model_version": {"id": version.id, "label": version.version_label, "weights_digest": version.weights_digest},
            "audit": audit,
            "decision": {"outcome": decision.outcome, "conditions": decision.conditions, "reason": decision.reason,
                         "decided_at": eventlog.format_timestamp(decision.decided_at)} if decision else None,
            "dossiers": [dossier_json(d) for d in dossiers],
            "possible_events": [t.event for t in SUBMISSIONS.available(case.state)],
            "url": f"/submissions/{case.id}"}


@bp.get("/openapi.json")
def openapi():
    """The document itself (public; not an operation of its own document)."""
    return jsonify(spec())


@operation("get", "/me", summary="The token's user", response=out.Me)
def who_am_i():
    return respond(out.Me, {"id": g.api_user.id, "email": g.api_user.email, "name": g.api_user.name,
                    "roles": sorted(roles()), "token_scope": g.api_token.scope})


@operation("post", "/deployments", summary="Register a deployment (submit scope; submitter or chair)",
           body=DeploymentIn, response=out.Deployment, status=201, errors=(400, 401, 403))
def create_deployment():
    require_scope("submit")
    require_roles(Role.SUBMITTER, Role.IRB_CHAIR)
    payload = parse(DeploymentIn)
    created = register_deployment(get_session(), payload.descriptor, owner=g.api_user)
    return respond(out.Deployment, deployment_json(created), 201)


@operation("get", "/deployments/<id:deployment_id>", summary="A deployment", response=out.Deployment,
           errors=(401, 404))
def get_deployment(deployment_id: int):
    return respond(out.Deployment, deployment_json(_deployment(deployment_id)))


@operation("get", "/deployments/<id:deployment_id>/history", summary="A deployment's status history",
           response=out.History, errors=(401, 404))
def deployment_history(deployment_id: int):
    deployment = _deployment(deployment_id)
    rows = get_session().execute(select(Event).where(Event.deployment_id == deployment.id,
                                                     Event.name.in_(DEPLOYMENT_EVENTS)).order_by(Event.seq)).scalars()
    return respond(out.History, {"deployment": deployment.id, "status": deployment.status, "history": [
        {"seq": e.seq, "at": eventlog.format_timestamp(e.occurred_at), "event": e.name, "from": e.from_state,
         "to": e.to_state, "actor": e.actor, "cause": e.payload.get("cause"),
         "reason": e.payload.get("reason") or e.payload.get("justification")}
        for e in rows]})


@operation("post", "/submissions", summary="Submit a model version for initial review or change control (submit "
           "scope)", body=SubmissionIn, response=out.Submission, status=201, errors=(400, 401, 403, 404, 409))
def create_submission():
    require_scope("submit")
    require_roles(Role.SUBMITTER, Role.IRB_CHAIR)
    payload = parse(SubmissionIn)
    case = submit_model_version(get_session(), current_app.config["GOVERNANCE"], _deployment(payload.deployment_id),
                                actor=g.api_user, version=payload.model_version, kind=payload.kind.value,
                                title=payload.title, summary=payload.summary, submit=payload.submit)
    return respond(out.Submission, submission_json(case), 201)


@operation("get", "/submissions/<id:submission_id>", summary="A case: state, pathway, audit progress and verdict, "
           "decision, dossiers", response=out.Submission, errors=(401, 404))
def get_submission(submission_id: int):
    return respond(out.Submission, submission_json(_case(submission_id)))


@operation("post", "/submissions/<id:submission_id>/events", summary="Fire an allowed workflow event (submit scope)",
           body=EventIn, response=out.EventFired, errors=(400, 401, 403, 404, 409))
def post_event(submission_id: int):
    require_scope("submit")
    case = _case(submission_id)
    payload = parse(EventIn)
    recorded = fire(get_session(), case, payload.event, g.api_user, payload.data,
                    settings=current_app.config["GOVERNANCE"])
    return respond(out.EventFired, {"event": {"seq": recorded.seq, "name": recorded.name, "hash": recorded.hash},
                    "submission": submission_json(case)})


@operation("get", "/submissions/<id:submission_id>/dossiers", summary="A case's signed dossiers", response=out.Dossier,
           many=True, errors=(401, 404))
def list_dossiers(submission_id: int):
    case = _case(submission_id)
    rows = get_session().execute(select(Dossier).where(Dossier.submission_id == case.id).order_by(Dossier.id)).scalars()
    return respond(out.Dossier, [dossier_json(d) for d in rows])


@operation("get", "/dossiers/<id:dossier_id>/pdf", summary="A signed dossier (PDF)", errors=(401, 404),
           media_type="application/pdf")
def dossier_pdf(dossier_id: int):
    found = get_session().get(Dossier, dossier_id)
    if found is None or found.submission_id is None:
        raise ApiError(404, f"no dossier {dossier_id}")
    _case(found.submission_id)
    return send_file(absolute_path(current_app.config["GOVERNANCE"], found), mimetype="application/pdf",
                     as_attachment=True, download_name=f"dossier-{found.submission_id}-{found.gate}-{found.id}.pdf")


@operation("get", "/registry", summary="Registry of AI systems (compliance, chair, admin)", response=out.Registry,
           errors=(400, 401, 403), query=(
               {"name": "status", "in": "query",
                "schema": {"type": "string", "enum": [s.value for s in DeploymentStatus]}},
               {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}},
               {"name": "per_page", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200}}))
def registry():
    require_roles(Role.COMPLIANCE_OFFICER, Role.IRB_CHAIR, Role.ADMIN)
    query = select(Deployment).order_by(Deployment.id)
    status = request.args.get("status")
    if status:
        if status not in set(DeploymentStatus):
            raise ApiError(400, f"status: one of {', '.join(DeploymentStatus)}", field="status")
        query = query.where(Deployment.status == status)
    page = int_arg("page", 1, MAX_PAGE)
    per_page = int_arg("per_page", 50, 200)
    rows = get_session().execute(query.limit(per_page).offset((page - 1) * per_page)).scalars().all()
    return respond(out.Registry, {"page": page, "per_page": per_page,
                                  "deployments": [deployment_json(d) for d in rows]})
