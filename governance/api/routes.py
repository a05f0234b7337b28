"""API endpoints. Inputs are validated by pydantic models that reject unknown keys; every write goes
through the same operations and workflow engine as the pages."""

from __future__ import annotations

from typing import Any, Literal

from flask import current_app, g, jsonify, request, send_file
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select

from .. import eventlog, queries
from ..db import get_session
from ..domain import Role
from ..models import Decision, Deployment, Dossier, Event, ModelVersion, Submission
from ..models.base import MAX_ROW_ID
from ..operations import fire
from ..operations.cases import add_model_version, open_submission, register_deployment
from ..operations.dossiers import absolute_path
from ..permissions import OVERSIGHT_ROLES, can_see, roles_of
from ..workflow import SUBMISSIONS, DeploymentStatus
from . import ApiError, bp, require_scope
from .openapi import spec

DEPLOYMENT_EVENTS = ("activate", "suspend", "reinstate", "renew", "expire", "retire")
MAX_PAGE = 100_000


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelVersionIn(Strict):
    version_label: str = Field(min_length=1, max_length=100)
    base_model: str = Field(min_length=1, max_length=200)
    weights_digest: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    endpoint: str = Field(min_length=1, max_length=500)
    architecture: str = Field(default="", max_length=100)
    tokenizer_digest: str = Field(default="", pattern=r"^([0-9a-fA-F]{64})?$")
    system_prompt_digest: str = Field(default="", pattern=r"^([0-9a-fA-F]{64})?$")
    quantization: str = Field(default="", max_length=40)
    served_model_id: str = Field(default="", max_length=200)
    serving_config: dict[str, Any] = {}
    finetune_data_summary: str = Field(default="", max_length=4000)
    finetune_data_categories: list[str] = Field(default=[], max_length=50)
    change_summary: str = Field(default="", max_length=4000)
    continuous_learning: bool = False


class SubmissionIn(Strict):
    deployment_id: int = Field(ge=1, le=MAX_ROW_ID)
    kind: Literal["initial", "change"]
    title: str = Field(default="", max_length=300)
    summary: str = Field(default="", max_length=4000)
    model_version: ModelVersionIn
    submit: bool = True


class DeploymentIn(Strict):
    descriptor: dict[str, Any]


class EventIn(Strict):
    event: str = Field(min_length=1, max_length=60)
    data: dict[str, Any] = {}


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def parse(model: type[BaseModel]) -> Any:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    if _has_nul(body):  # PostgreSQL text cannot hold NUL characters
        raise ApiError(400, "the request body must not contain NUL (\\u0000) characters")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        message = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
        raise ApiError(400, f"{where}: {message}", field=where) from None


def _int_arg(name: str, default: int, maximum: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name}: an integer is needed", field=name) from None
    if not 1 <= value <= maximum:
        raise ApiError(400, f"{name}: between 1 and {maximum}", field=name)
    return value


def _roles() -> frozenset[str]:
    return roles_of(get_session(), g.api_user)


def _require_roles(*allowed: str) -> None:
    if not _roles() & set(allowed):
        raise ApiError(403, f"only {' or '.join(allowed)} may do this")


def _case(submission_id: int) -> Submission:
    found = get_session().get(Submission, submission_id)
    if found is None or not can_see(get_session(), g.api_user, found):
        raise ApiError(404, f"no submission {submission_id} visible to you")
    return found


def _deployment(deployment_id: int) -> Deployment:
    session = get_session()
    found = session.get(Deployment, deployment_id)
    visible = found is not None and (found.owner_id == g.api_user.id or bool(_roles() & OVERSIGHT_ROLES) or any(
        can_see(session, g.api_user, s) for s in session.execute(
            select(Submission).where(Submission.deployment_id == found.id)).scalars()))
    if not visible:
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
        detail = (run.summary or {}).get("verdict_detail") or {}
        audit = {"id": run.id, "status": run.status, "done": run.items_done, "total": run.items_total,
                 "percent": round(100 * run.items_done / run.items_total) if run.items_total else 0,
                 "verdict": run.verdict, "reasons": run.verdict_reasons, "demo": run.demo,
                 "criteria": detail.get("criteria", []), "accuracy": ((run.summary or {}).get("overall") or {})
                 .get("accuracy"), "error": run.error or None}
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
    return jsonify(spec())


@bp.get("/me")
def who_am_i():
    return jsonify({"id": g.api_user.id, "email": g.api_user.email, "name": g.api_user.name,
                    "roles": sorted(_roles()), "token_scope": g.api_token.scope})


@bp.post("/deployments")
def create_deployment():
    require_scope("submit")
    _require_roles(Role.SUBMITTER, Role.IRB_CHAIR)
    payload = parse(DeploymentIn)
    created = register_deployment(get_session(), payload.descriptor, owner=g.api_user)
    return jsonify(deployment_json(created)), 201


@bp.get("/deployments/<id:deployment_id>")
def get_deployment(deployment_id: int):
    return jsonify(deployment_json(_deployment(deployment_id)))


@bp.get("/deployments/<id:deployment_id>/history")
def deployment_history(deployment_id: int):
    deployment = _deployment(deployment_id)
    rows = get_session().execute(select(Event).where(Event.deployment_id == deployment.id,
                                                     Event.name.in_(DEPLOYMENT_EVENTS)).order_by(Event.seq)).scalars()
    return jsonify({"deployment": deployment.id, "status": deployment.status, "history": [
        {"seq": e.seq, "at": eventlog.format_timestamp(e.occurred_at), "event": e.name, "from": e.from_state,
         "to": e.to_state, "actor": e.actor, "cause": e.payload.get("cause"),
         "reason": e.payload.get("reason") or e.payload.get("justification")}
        for e in rows]})


@bp.post("/submissions")
def create_submission():
    require_scope("submit")
    _require_roles(Role.SUBMITTER, Role.IRB_CHAIR)
    payload = parse(SubmissionIn)
    session = get_session()
    deployment = _deployment(payload.deployment_id)
    if deployment.owner_id != g.api_user.id and Role.IRB_CHAIR not in _roles():
        raise ApiError(403, "only the deployment's owner submits its model versions")
    version = add_model_version(session, deployment, actor=g.api_user, **payload.model_version.model_dump())
    case = open_submission(session, kind=payload.kind, deployment=deployment, model_version=version,
                           submitter=g.api_user, title=payload.title, summary=payload.summary)
    if payload.submit:
        fire(session, case, "submit", g.api_user, settings=current_app.config["GOVERNANCE"])
    return jsonify(submission_json(case)), 201


@bp.get("/submissions/<id:submission_id>")
def get_submission(submission_id: int):
    return jsonify(submission_json(_case(submission_id)))


@bp.post("/submissions/<id:submission_id>/events")
def post_event(submission_id: int):
    require_scope("submit")
    case = _case(submission_id)
    payload = parse(EventIn)
    recorded = fire(get_session(), case, payload.event, g.api_user, payload.data,
                    settings=current_app.config["GOVERNANCE"])
    return jsonify({"event": {"seq": recorded.seq, "name": recorded.name, "hash": recorded.hash},
                    "submission": submission_json(case)})


@bp.get("/submissions/<id:submission_id>/dossiers")
def list_dossiers(submission_id: int):
    case = _case(submission_id)
    rows = get_session().execute(select(Dossier).where(Dossier.submission_id == case.id).order_by(Dossier.id)).scalars()
    return jsonify([dossier_json(d) for d in rows])


@bp.get("/dossiers/<id:dossier_id>/pdf")
def dossier_pdf(dossier_id: int):
    found = get_session().get(Dossier, dossier_id)
    if found is None or found.submission_id is None:
        raise ApiError(404, f"no dossier {dossier_id}")
    _case(found.submission_id)
    return send_file(absolute_path(current_app.config["GOVERNANCE"], found), mimetype="application/pdf",
                     as_attachment=True, download_name=f"dossier-{found.submission_id}-{found.gate}-{found.id}.pdf")


@bp.get("/registry")
def registry():
    _require_roles(Role.COMPLIANCE_OFFICER, Role.IRB_CHAIR, Role.ADMIN)
    query = select(Deployment).order_by(Deployment.id)
    status = request.args.get("status")
    if status:
        if status not in set(DeploymentStatus):
            raise ApiError(400, f"status: one of {', '.join(DeploymentStatus)}", field="status")
        query = query.where(Deployment.status == status)
    page = _int_arg("page", 1, MAX_PAGE)
    per_page = _int_arg("per_page", 50, 200)
    rows = get_session().execute(query.limit(per_page).offset((page - 1) * per_page)).scalars().all()
    return jsonify({"page": page, "per_page": per_page, "deployments": [deployment_json(d) for d in rows]})
