"""What the API answers, declared once: every response body is built through one of these models, and the
OpenAPI document is generated from them (request bodies are in :mod:`governance.schemas`)."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..domain import AuditStatus, AuditVerdict, DeploymentStatus, Severity, SuspensionCause
from ..schemas import Sha256


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Error(Out):
    """Every error is JSON with a message; a workflow refusal names its guard, a malformed input its field."""

    error: str = Field(min_length=1)
    status: int
    guard: str | None = Field(default=None, description="the workflow guard that refused")
    event: str | None = None
    state: str | None = None
    field: str | None = Field(default=None, description="the malformed input")


class Me(Out):
    id: int
    email: str
    name: str
    roles: list[str]
    token_scope: Literal["read", "submit", "watch"]


class VersionRef(Out):
    id: int
    label: str
    weights_digest: str


class Deployment(Out):
    id: int
    name: str
    scenario: str
    status: DeploymentStatus
    nmpa_status: str | None
    descriptor: dict[str, Any]
    approved_version: VersionRef | None
    continuing_review_due: date | None


class HistoryEntry(Out):
    seq: int
    at: str
    event: str
    from_: str | None = Field(alias="from")
    to: str | None
    actor: str
    cause: SuspensionCause | None = Field(default=None, description="why a suspension happened")
    reason: str | None = None


class History(Out):
    deployment: int
    status: DeploymentStatus
    history: list[HistoryEntry]


class Registry(Out):
    page: int
    per_page: int
    deployments: list[Deployment]


class Criterion(Out):
    criterion: str
    #: "reported": measured but not gating (e.g. graded by a grader the policy does not trust); "second_stage":
    #: the pre-registered reserve items decide.
    outcome: Literal["pass", "fail", "inconclusive", "second_stage", "reported"]
    value: Any = None
    threshold: Any = None
    detail: str = ""
    gating: bool = True


class Audit(Out):
    id: int
    status: AuditStatus
    done: int
    total: int
    percent: int = Field(ge=0, le=100)
    verdict: AuditVerdict | None
    reasons: list[str]
    demo: bool
    criteria: list[Criterion]
    accuracy: float | None = None
    error: str | None = None


class Decision(Out):
    outcome: str
    conditions: str
    reason: str
    decided_at: str


class Dossier(Out):
    id: int
    submission: int | None
    gate: str
    sha256: Sha256
    pages: int | None
    created_at: str
    signer_fingerprint: str
    pdf: str = Field(description="the PDF's path, relative to the server")


class Submission(Out):
    id: int
    kind: str
    title: str
    state: str
    pathway: str | None
    materiality: str | None
    round: int
    lock_version: int
    deployment_id: int
    model_version: VersionRef
    audit: Audit | None
    decision: Decision | None
    dossiers: list[Dossier]
    possible_events: list[str]
    url: str = Field(description="the case's page, relative to the server")


class EventRecord(Out):
    seq: int
    name: str
    hash: Sha256


class EventFired(Out):
    event: EventRecord
    submission: Submission


class Incident(Out):
    id: int
    deployment_id: int
    deployment_status: DeploymentStatus
    model_version_id: int | None = None
    severity: Severity
    source: str
    status: str
    patient_harmed: bool
    reported_at: str
    adverse_event_required: bool
    adverse_event_reference: str | None = None
    case: int | None = Field(description="the incident submission")
    url: str


def dump(model: type[BaseModel], data: dict[str, Any] | list[dict[str, Any]]) -> Any:
    """``data`` checked against its documented model and returned as JSON-ready values: a response can only
    say what the OpenAPI document says it says."""
    if isinstance(data, list):
        return [model.model_validate(item).model_dump(mode="json", by_alias=True) for item in data]
    return model.model_validate(data).model_dump(mode="json", by_alias=True)


class InteractionsReceived(Out):
    received: int
    #: How many the deployment's sampling rate kept (each de-identified before it was stored).
    kept: int
    #: Identifiers removed, by type (occurrences).
    removed: dict[str, int]
