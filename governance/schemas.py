"""What the product accepts from people and systems, declared once.

Each input is one pydantic model here. The API validates request bodies with it, the OpenAPI document is
generated from it, the operations validate what the pages, the CLI and the API hand them with it, the
pages' forms take their limits from it (:func:`max_length`), and the database columns take their lengths
from it. Strings are stripped before their limits are checked, so " v1.0" and "v1.0" are one label.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.fields import FieldInfo

from .domain import Severity, SubmissionKind

#: Ids are 32-bit database integers: a larger one cannot exist (a 404 in a path, malformed in a body).
MAX_ROW_ID = 2**31 - 1
#: A sha256 digest as people paste it (either case); it is stored in lower case.
SHA256_PATTERN = r"^[0-9a-fA-F]{64}$"
_SHA256 = re.compile(SHA256_PATTERN)

#: Free text a person writes on a case or a deployment (an intended use, a comment, a statement, a reason, a vote's
#: or a checklist item's comment): one limit, used by the forms, the API, the engine and the descriptor.
NOTE_MAX = 4000
#: A one-line value a person types (a name, a title, a label).
LINE_MAX = 200
#: An e-mail address (RFC 5321) and a password as typed.
EMAIL_MAX = 254
PASSWORD_MAX = 256

RowId = Annotated[int, Field(ge=1, le=MAX_ROW_ID)]
Sha256 = Annotated[str, StringConstraints(strip_whitespace=True, pattern=SHA256_PATTERN, to_lower=True)]
OptionalSha256 = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^([0-9a-fA-F]{64})?$",
                                                  to_lower=True)]


def Text(max_length: int, *, required: bool = False) -> Any:  # noqa: N802  (a type, used like one)
    """A stripped string of at most ``max_length`` characters (at least one when ``required``)."""
    return Annotated[str, StringConstraints(strip_whitespace=True, min_length=1 if required else 0,
                                            max_length=max_length)]


def is_sha256(value: str | None) -> bool:
    return bool(value) and bool(_SHA256.match(value))


class Strict(BaseModel):
    """Unknown keys are refused, not ignored: a misspelt field must not pass silently."""

    model_config = ConfigDict(extra="forbid")


class ModelVersionIn(Strict):
    """A model version submitted for review: what the committee approves, by digest."""

    version_label: Text(100, required=True)
    base_model: Text(200, required=True) = Field(description="The Hugging Face id or vendor name of the base model.")
    weights_digest: Sha256 = Field(description="sha256 over the model files (`govern submit` computes it).")
    endpoint: Text(500, required=True) = Field(
        description="http(s)://… for an OpenAI-compatible server, a folder for in-process vLLM, demo://… in demo mode.")
    architecture: Text(100) = ""
    tokenizer_digest: OptionalSha256 = ""
    system_prompt_digest: OptionalSha256 = ""
    quantization: Text(40) = ""
    served_model_id: Text(200) = ""
    serving_config: dict[str, Any] = {}
    finetune_data_summary: Text(4000) = ""
    finetune_data_categories: list[Text(100, required=True)] = Field(default=[], max_length=50)
    change_summary: Text(4000) = ""
    continuous_learning: bool = False


class SubmissionIn(Strict):
    """A model version submitted for initial review or change control (the API's and `govern submit`'s body)."""

    deployment_id: RowId
    kind: Literal[SubmissionKind.INITIAL, SubmissionKind.CHANGE]
    title: Text(300) = ""
    summary: Text(4000) = ""
    model_version: ModelVersionIn
    submit: bool = True


class EventIn(Strict):
    """A workflow event and the fields it takes (each event accepts only its own fields)."""

    event: Text(60, required=True)
    data: dict[str, Any] = {}


class IncidentIn(Strict):
    """An incident with an AI system in use, reported by a clinician (or the chair)."""

    deployment_id: RowId
    model_version_id: RowId | None = None
    severity: Severity
    what_happened: Text(8000, required=True)
    patient_harmed: bool = False
    deidentified_example: Text(8000) = ""
    occurred_at: datetime | None = None


def _field(model: type[BaseModel], name: str) -> FieldInfo:
    return model.model_fields[name]


def max_length(model: type[BaseModel], name: str) -> int:
    """The declared maximum length of a string field (forms and database columns use it)."""
    for meta in _field(model, name).metadata:
        found = getattr(meta, "max_length", None)
        if found is not None:
            return found
    raise KeyError(f"{model.__name__}.{name} declares no max_length")


def is_required(model: type[BaseModel], name: str) -> bool:
    return _field(model, name).is_required() or any(getattr(m, "min_length", 0) for m in _field(model, name).metadata)
