"""The OpenAPI 3.0 document of /api/v1 (served at /api/v1/openapi.json; checked by schemathesis)."""

from __future__ import annotations

from typing import Any

from .. import __version__
from ..classification.descriptor import Descriptor, field_vocabulary
from ..domain import SuspensionCause
from ..models.base import MAX_ROW_ID
from ..workflow import SUBMISSIONS, DeploymentStatus

SHA256 = {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}
ID = {"type": "integer", "minimum": 1, "maximum": MAX_ROW_ID}
ERROR = {"$ref": "#/components/schemas/Error"}


def _descriptor_schema() -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for name, info in field_vocabulary().items():
        if info["kind"] == "bool":
            item: dict[str, Any] = {"type": "boolean"}
        elif info["kind"] == "enum":
            item = {"type": "string", "enum": list(info["values"])}
        else:
            item = {"type": "string", "minLength": 1}
            item.update({"maxLength": m.max_length for m in Descriptor.model_fields[name].metadata
                         if getattr(m, "max_length", None) is not None})
        properties[name] = {"type": "array", "items": item, "minItems": 1} if info["list"] else item
    return {"type": "object", "additionalProperties": False, "required": sorted(properties), "properties": properties}


FIELD_KINDS: dict[str, dict[str, Any]] = {
    "text": {"type": "string"}, "textarea": {"type": "string"}, "email": {"type": "string"},
    "password": {"type": "string"}, "bool": {"type": "boolean"}, "int": ID,
    "date": {"type": "string", "format": "date"},
    "json": {"type": "object"}}


def _event_schema() -> dict[str, Any]:
    """The events of the submission workflow and every field any of them takes (each event accepts only its own
    fields; the error names the ones it takes)."""
    fields: dict[str, Any] = {}
    for transition in SUBMISSIONS.transitions:
        for field in transition.fields:
            schema = {"type": "string", "enum": list(field.choices)} if field.kind == "choice" \
                else dict(FIELD_KINDS.get(field.kind, {}))
            seen = fields.setdefault(field.name, {**schema, "description": field.label})
            if {k: v for k, v in seen.items() if k != "description"} != schema:
                fields[field.name] = {}  # two events take differently typed fields of one name
    return {"type": "object", "additionalProperties": False, "required": ["event"], "properties": {
        "event": {"type": "string", "enum": SUBMISSIONS.events()},
        "data": {"type": "object", "additionalProperties": False, "properties": fields}}}


def _responses(ok: dict[str, Any], *codes: int) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": ok}
    descriptions = {201: "Created", 400: "Malformed input", 401: "No valid token", 403: "Missing scope or role",
                    404: "Not found or not visible to you", 409: "Refused by a workflow guard or a concurrent change"}
    for code in codes:
        responses[str(code)] = {"description": descriptions[code], "content": {"application/json": {"schema": ERROR}}}
    return responses


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def spec() -> dict[str, Any]:
    ref = lambda name: {"$ref": f"#/components/schemas/{name}"}  # noqa: E731
    created_submission = _responses(_json(ref("Submission")), 400, 401, 403, 404, 409)
    created_submission["201"] = _json(ref("Submission"), "Created")
    del created_submission["200"]
    created_deployment = _responses(_json(ref("Deployment")), 400, 401, 403)
    created_deployment["201"] = _json(ref("Deployment"), "Created")
    del created_deployment["200"]
    id_param = lambda name: {"name": name, "in": "path", "required": True,  # noqa: E731
                             "schema": ID}
    return {
        "openapi": "3.0.3",
        "info": {"title": "AI Ethics Review API", "version": __version__,
                 "description": "Submit model versions from CI, follow them through review, fetch signed dossiers."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": {
            "/api/v1/me": {"get": {"summary": "The token's user", "responses": _responses(_json(ref("Me")), 401)}},
            "/api/v1/deployments": {"post": {
                "summary": "Register a deployment (submit scope; submitter or chair)",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "additionalProperties": False, "required": ["descriptor"],
                    "properties": {"descriptor": ref("Descriptor")}}}}},
                "responses": created_deployment}},
            "/api/v1/deployments/{deployment_id}": {"get": {
                "summary": "A deployment", "parameters": [id_param("deployment_id")],
                "responses": _responses(_json(ref("Deployment")), 401, 404)}},
            "/api/v1/deployments/{deployment_id}/history": {"get": {
                "summary": "A deployment's status history", "parameters": [id_param("deployment_id")],
                "responses": _responses(_json(ref("History")), 401, 404)}},
            "/api/v1/submissions": {"post": {
                "summary": "Submit a model version for initial review or change control (submit scope)",
                "requestBody": {"required": True, "content": {"application/json": {"schema": ref("SubmissionIn")}}},
                "responses": created_submission}},
            "/api/v1/submissions/{submission_id}": {"get": {
                "summary": "A case: state, pathway, audit progress and verdict, decision, dossiers",
                "parameters": [id_param("submission_id")],
                "responses": _responses(_json(ref("Submission")), 401, 404)}},
            "/api/v1/submissions/{submission_id}/events": {"post": {
                "summary": "Fire an allowed workflow event (submit scope)", "parameters": [id_param("submission_id")],
                "requestBody": {"required": True, "content": {"application/json": {"schema": ref("EventIn")}}},
                "responses": _responses(_json(ref("EventFired")), 400, 401, 403, 404, 409)}},
            "/api/v1/submissions/{submission_id}/dossiers": {"get": {
                "summary": "A case's signed dossiers", "parameters": [id_param("submission_id")],
                "responses": _responses(_json({"type": "array", "items": ref("Dossier")}), 401, 404)}},
            "/api/v1/dossiers/{dossier_id}/pdf": {"get": {
                "summary": "A signed dossier (PDF)", "parameters": [id_param("dossier_id")],
                "responses": {"200": {"description": "The PDF", "content": {"application/pdf": {
                    "schema": {"type": "string", "format": "binary"}}}},
                    "401": {"description": "No valid token", "content": {"application/json": {"schema": ERROR}}},
                    "404": {"description": "Not found", "content": {"application/json": {"schema": ERROR}}}}}},
            "/api/v1/registry": {"get": {
                "summary": "Registry of AI systems (compliance, chair, admin)",
                "parameters": [{"name": "status", "in": "query", "schema": {"type": "string", "enum": [
                    "pending", "active", "suspended", "expired", "retired"]}},
                    {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100_000}},
                    {"name": "per_page", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200}}],
                "responses": _responses(_json(ref("Registry")), 400, 401, 403)}},
            "/api/v1/incidents": {"post": {
                "summary": "Report an incident with an AI system (clinician; submit scope)",
                "requestBody": {"required": True, "content": {"application/json": {"schema": ref("IncidentIn")}}},
                "responses": {**{code: response for code, response in
                                 _responses(_json(ref("Incident")), 400, 401, 403, 404, 409).items() if code != "200"},
                              "201": _json(ref("Incident"), "Created: a serious or critical incident has already "
                                                            "suspended the deployment")}}},
            "/api/v1/incidents/{incident_id}": {"get": {
                "summary": "An incident (its reporter, the deployment's owner, oversight roles)",
                "parameters": [id_param("incident_id")],
                "responses": _responses(_json(ref("Incident")), 401, 404)}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error", "status"], "properties": {
                    "error": {"type": "string", "minLength": 1}, "status": {"type": "integer"},
                    "guard": {"type": "string", "description": "the workflow guard that refused"},
                    "event": {"type": "string"}, "state": {"type": "string"},
                    "field": {"type": "string", "description": "the malformed input"}}},
                "Me": {"type": "object", "required": ["id", "email", "name", "roles", "token_scope"], "properties": {
                    "id": {"type": "integer"}, "email": {"type": "string"}, "name": {"type": "string"},
                    "roles": {"type": "array", "items": {"type": "string"}},
                    "token_scope": {"type": "string", "enum": ["read", "submit"]}}},
                "Descriptor": _descriptor_schema(),
                "VersionRef": {"type": "object", "required": ["id", "label", "weights_digest"], "properties": {
                    "id": {"type": "integer"}, "label": {"type": "string"}, "weights_digest": {"type": "string"}}},
                "Deployment": {"type": "object", "required": [
                    "id", "name", "scenario", "status", "nmpa_status", "descriptor", "approved_version",
                    "continuing_review_due"], "properties": {
                    "id": {"type": "integer"}, "name": {"type": "string"}, "scenario": {"type": "string"},
                    "status": {"type": "string", "enum": [s.value for s in DeploymentStatus]},
                    "nmpa_status": {"type": "string", "nullable": True}, "descriptor": {"type": "object"},
                    "approved_version": {**ref("VersionRef"), "nullable": True},
                    "continuing_review_due": {"type": "string", "format": "date", "nullable": True}}},
                "History": {"type": "object", "required": ["deployment", "status", "history"], "properties": {
                    "deployment": {"type": "integer"}, "status": {"type": "string"},
                    "history": {"type": "array", "items": {"type": "object", "required": [
                        "seq", "at", "event", "from", "to", "actor"], "properties": {
                        "seq": {"type": "integer"}, "at": {"type": "string"}, "event": {"type": "string"},
                        "from": {"type": "string", "nullable": True}, "to": {"type": "string", "nullable": True},
                        "actor": {"type": "string"},
                        "cause": {"type": "string", "nullable": True, "enum": [
                            *(cause.value for cause in SuspensionCause), None],
                            "description": "why a suspension happened"},
                        "reason": {"type": "string", "nullable": True}}}}}},
                "Registry": {"type": "object", "required": ["page", "per_page", "deployments"], "properties": {
                    "page": {"type": "integer"}, "per_page": {"type": "integer"},
                    "deployments": {"type": "array", "items": ref("Deployment")}}},
                "EventIn": _event_schema(),
                "EventFired": {"type": "object", "required": ["event", "submission"], "properties": {
                    "event": {"type": "object", "required": ["seq", "name", "hash"], "properties": {
                        "seq": {"type": "integer"}, "name": {"type": "string"}, "hash": SHA256}},
                    "submission": ref("Submission")}},
                "ModelVersionIn": {"type": "object", "additionalProperties": False,
                                   "required": ["version_label", "base_model", "weights_digest", "endpoint"],
                                   "properties": {
                                       "version_label": {"type": "string", "minLength": 1, "maxLength": 100},
                                       "base_model": {"type": "string", "minLength": 1, "maxLength": 200},
                                       "weights_digest": SHA256,
                                       "endpoint": {"type": "string", "minLength": 1, "maxLength": 500},
                                       "architecture": {"type": "string", "maxLength": 100},
                                       "tokenizer_digest": {"type": "string", "pattern": "^([0-9a-fA-F]{64})?$"},
                                       "system_prompt_digest": {"type": "string", "pattern": "^([0-9a-fA-F]{64})?$"},
                                       "quantization": {"type": "string", "maxLength": 40},
                                       "served_model_id": {"type": "string", "maxLength": 200},
                                       "serving_config": {"type": "object"},
                                       "finetune_data_summary": {"type": "string", "maxLength": 4000},
                                       "finetune_data_categories": {"type": "array", "items": {"type": "string"},
                                                                    "maxItems": 50},
                                       "change_summary": {"type": "string", "maxLength": 4000},
                                       "continuous_learning": {"type": "boolean"}}},
                "SubmissionIn": {"type": "object", "additionalProperties": False,
                                 "required": ["deployment_id", "kind", "model_version"], "properties": {
                                     "deployment_id": ID,
                                     "kind": {"type": "string", "enum": ["initial", "change"]},
                                     "title": {"type": "string", "maxLength": 300},
                                     "summary": {"type": "string", "maxLength": 4000},
                                     "model_version": ref("ModelVersionIn"), "submit": {"type": "boolean"}}},
                "Submission": {"type": "object", "required": [
                    "id", "kind", "title", "state", "pathway", "materiality", "round", "lock_version", "deployment_id",
                    "model_version", "audit", "decision", "dossiers", "possible_events", "url"], "properties": {
                    "id": {"type": "integer"}, "kind": {"type": "string"}, "title": {"type": "string"},
                    "state": {"type": "string"}, "pathway": {"type": "string", "nullable": True},
                    "materiality": {"type": "string", "nullable": True}, "round": {"type": "integer"},
                    "lock_version": {"type": "integer"}, "deployment_id": {"type": "integer"},
                    "model_version": ref("VersionRef"), "audit": {**ref("Audit"), "nullable": True},
                    "decision": {"type": "object", "nullable": True, "required": [
                        "outcome", "conditions", "reason", "decided_at"], "properties": {
                        "outcome": {"type": "string"}, "conditions": {"type": "string"},
                        "reason": {"type": "string"}, "decided_at": {"type": "string"}}},
                    "dossiers": {"type": "array", "items": ref("Dossier")},
                    "possible_events": {"type": "array", "items": {"type": "string"}},
                    "url": {"type": "string", "description": "the case's page, relative to the server"}}},
                "Audit": {"type": "object", "required": [
                    "id", "status", "done", "total", "percent", "verdict", "reasons", "demo", "criteria"],
                    "properties": {
                    "id": {"type": "integer"},
                    "status": {"type": "string", "enum": ["queued", "running", "completed", "failed", "cancelled"]},
                    "done": {"type": "integer"}, "total": {"type": "integer"},
                    "percent": {"type": "integer", "minimum": 0, "maximum": 100},
                    "verdict": {"type": "string", "enum": ["pass", "fail", "inconclusive"], "nullable": True},
                    "reasons": {"type": "array", "items": {"type": "string"}}, "demo": {"type": "boolean"},
                    "criteria": {"type": "array", "items": {"type": "object", "required": [
                        "criterion", "outcome", "value", "threshold"], "properties": {
                        "criterion": {"type": "string"},
                        "outcome": {"type": "string", "enum": ["pass", "fail", "inconclusive"]},
                        "value": {}, "threshold": {}, "detail": {"type": "string"}}}},
                    "accuracy": {"type": "number", "nullable": True},
                    "error": {"type": "string", "nullable": True}}},
                "Dossier": {"type": "object", "required": [
                    "id", "submission", "gate", "sha256", "pages", "created_at", "signer_fingerprint", "pdf"],
                    "properties": {
                    "id": {"type": "integer"}, "submission": {"type": "integer", "nullable": True},
                    "gate": {"type": "string"}, "sha256": SHA256, "pages": {"type": "integer", "nullable": True},
                    "created_at": {"type": "string"}, "signer_fingerprint": {"type": "string"},
                    "pdf": {"type": "string", "description": "the PDF's path, relative to the server"}}},
                "Incident": {"type": "object", "required": [
                    "id", "deployment_id", "deployment_status", "severity", "source", "status", "patient_harmed",
                    "reported_at", "adverse_event_required", "case", "url"], "properties": {
                    "id": {"type": "integer"}, "deployment_id": {"type": "integer"},
                    "deployment_status": {"type": "string", "enum": ["pending", "active", "suspended", "expired",
                                                                     "retired"]},
                    "model_version_id": {"type": "integer", "nullable": True},
                    "severity": {"type": "string", "enum": ["minor", "moderate", "serious", "critical"]},
                    "source": {"type": "string"}, "status": {"type": "string"},
                    "patient_harmed": {"type": "boolean"}, "reported_at": {"type": "string"},
                    "adverse_event_required": {"type": "boolean"},
                    "adverse_event_reference": {"type": "string", "nullable": True},
                    "case": {"type": "integer", "nullable": True, "description": "the incident submission"},
                    "url": {"type": "string"}}},
                "IncidentIn": {"type": "object", "additionalProperties": False,
                               "required": ["deployment_id", "severity", "what_happened"], "properties": {
                                   "deployment_id": ID,
                                   "model_version_id": ID,
                                   "severity": {"type": "string", "enum": ["minor", "moderate", "serious", "critical"]},
                                   "what_happened": {"type": "string", "minLength": 1, "maxLength": 8000},
                                   "patient_harmed": {"type": "boolean"},
                                   "deidentified_example": {"type": "string", "maxLength": 8000},
                                   "occurred_at": {"type": "string", "format": "date-time"}}},
            },
        },
    }
