"""The OpenAPI 3.1 document of /api/v1, generated (served at /api/v1/openapi.json; checked by schemathesis).

Every endpoint is declared with :func:`operation`, which routes it and records its request model, response
model and error statuses; the document is built from those records and from the pydantic models' own JSON
Schema, so a route cannot exist undocumented and the document cannot describe a field the code does not
check. The fields a workflow event takes come from the declared workflow table.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from ..classification.descriptor import Descriptor
from ..schemas import MAX_ROW_ID, EventIn
from ..version import __version__
from ..workflow import SUBMISSIONS
from . import schemas as out
from .common import bp

REF = "#/components/schemas/{model}"
ERROR_DESCRIPTIONS = {400: "Malformed input", 401: "No valid token", 403: "Missing scope or role",
                      404: "Not found or not visible to you",
                      409: "Refused by a workflow guard or a concurrent change",
                      413: "The request body is larger than the server accepts (max_request_bytes)"}
ID_SCHEMA = {"type": "integer", "minimum": 1, "maximum": MAX_ROW_ID}


@dataclass(frozen=True)
class Operation:
    method: str
    rule: str
    endpoint: str
    summary: str
    body: type[BaseModel] | None
    response: type[BaseModel] | None
    many: bool
    status: int
    errors: tuple[int, ...]
    query: tuple[dict[str, Any], ...] = field(default=())
    media_type: str = "application/json"

    @property
    def path(self) -> str:
        """The Flask rule as an OpenAPI path: ``/submissions/<id:submission_id>`` → ``/submissions/{submission_id}``."""
        return bp.url_prefix + re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", self.rule)

    @property
    def path_parameters(self) -> list[str]:
        return re.findall(r"<(?:[^:<>]+:)?([^<>]+)>", self.rule)


OPERATIONS: list[Operation] = []


def operation(method: str, rule: str, *, summary: str, body: type[BaseModel] | None = None,
              response: type[BaseModel] | None = None, many: bool = False, status: int = 200,
              errors: tuple[int, ...] = (401,), query: tuple[dict[str, Any], ...] = (),
              media_type: str = "application/json") -> Callable[[Callable], Callable]:
    """Route an API endpoint and document it in one declaration."""
    def register(view: Callable) -> Callable:
        OPERATIONS.append(Operation(method.upper(), rule, f"{bp.name}.{view.__name__}", summary, body, response,
                                    many, status, tuple(sorted(set(errors))), query, media_type))
        return bp.route(rule, methods=[method.upper()])(view)
    return register


def _event_data_schema() -> dict[str, Any]:
    """Every field any submission event takes, typed from the workflow's FieldSpecs (each event accepts only its
    own fields; the error names the ones it takes)."""
    kinds = {"text": {"type": "string"}, "textarea": {"type": "string"}, "email": {"type": "string"},
             "password": {"type": "string"}, "bool": {"type": "boolean"}, "int": ID_SCHEMA, "meeting": ID_SCHEMA,
             "date": {"type": "string", "format": "date"}, "json": {"type": "object"}}
    fields: dict[str, Any] = {}
    for transition in SUBMISSIONS.transitions:
        for spec in transition.fields:
            schema = {"type": "string", "enum": list(spec.choices)} if spec.kind == "choice" \
                else dict(kinds.get(spec.kind, {}))
            seen = fields.setdefault(spec.name, {**schema, "description": spec.label})
            if {k: v for k, v in seen.items() if k != "description"} != schema:
                fields[spec.name] = {}  # two events take differently typed fields of one name
    return {"type": "object", "additionalProperties": False, "properties": fields}


def _components() -> dict[str, Any]:
    models = {out.Error, *(op.body for op in OPERATIONS if op.body), *(op.response for op in OPERATIONS if op.response)}
    _refs, generated = models_json_schema([(m, "validation" if m in {op.body for op in OPERATIONS} else
                                            "serialization") for m in sorted(models, key=lambda m: m.__name__)],
                                          ref_template=REF)
    schemas = dict(generated.get("$defs", {}))
    schemas["Descriptor"] = Descriptor.model_json_schema(ref_template=REF)
    schemas.update(schemas["Descriptor"].pop("$defs", {}))
    if "DeploymentIn" in schemas:  # validated by the operation against the descriptor's own model
        schemas["DeploymentIn"]["properties"]["descriptor"] = {"$ref": REF.format(model="Descriptor")}
    schemas[EventIn.__name__]["properties"]["event"] = {"type": "string", "enum": SUBMISSIONS.events()}
    schemas[EventIn.__name__]["properties"]["data"] = _event_data_schema()
    return schemas


def _responses(op: Operation) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    if op.response is not None:
        schema: dict[str, Any] = {"$ref": REF.format(model=op.response.__name__)}
        if op.many:
            schema = {"type": "array", "items": schema}
        responses[str(op.status)] = {"description": "Created" if op.status == 201 else "OK",
                                     "content": {op.media_type: {"schema": schema}}}
    else:
        responses[str(op.status)] = {"description": "The file", "content": {op.media_type: {
            "schema": {"type": "string", "format": "binary"}}}}
    for code in op.errors:
        responses[str(code)] = {"description": ERROR_DESCRIPTIONS[code],
                                "content": {"application/json": {"schema": {"$ref": REF.format(model="Error")}}}}
    return responses


def spec() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for op in OPERATIONS:
        entry: dict[str, Any] = {"summary": op.summary, "operationId": op.endpoint, "responses": _responses(op)}
        parameters = [{"name": name, "in": "path", "required": True, "schema": ID_SCHEMA}
                      for name in op.path_parameters]
        parameters += [dict(q) for q in op.query]
        if parameters:
            entry["parameters"] = parameters
        if op.body is not None:
            entry["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": REF.format(model=op.body.__name__)}}}}
        if op.endpoint in PUBLIC_OPERATIONS:
            entry["security"] = []
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "AI Ethics Review API", "version": __version__,
                 "description": "Submit model versions from CI, follow them through review, fetch signed dossiers."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                       "schemas": _components()},
    }


#: Operations anyone may call without a token.
PUBLIC_OPERATIONS = {"api.openapi"}
