"""Classifying a case: materiality for changes, then the rule engine, stored with its inputs."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlmodel import Session

from .. import obligations, queries
from ..classification.descriptor import descriptor_from_dict
from ..classification.engine import classify
from ..classification.materiality import ModelVersionRecord, assess_change
from ..classification.rules import load_ruleset
from ..config import Settings
from ..domain import SubmissionKind
from ..models import Classification, Deployment, Incident, ModelVersion, Submission, User


def version_record(version: ModelVersion, fallback_descriptor: dict, *,
                   prefer_fallback: bool = False) -> ModelVersionRecord:
    """``version`` as change control reads it, under its own descriptor (or ``fallback_descriptor`` where it has
    none, or where ``prefer_fallback`` says the caller knows the scope better)."""
    descriptor = (fallback_descriptor or version.descriptor) if prefer_fallback else \
        (version.descriptor or fallback_descriptor)
    return ModelVersionRecord(
        version_label=version.version_label, base_model=version.base_model, architecture=version.architecture,
        weights_digest=version.weights_digest, tokenizer_digest=version.tokenizer_digest,
        system_prompt_digest=version.system_prompt_digest, quantization=version.quantization,
        serving_config=dict(version.serving_config or {}),
        finetune_data_categories=list(version.finetune_data_categories or []),
        continuous_learning=version.continuous_learning, change_summary=version.change_summary or "",
        descriptor=descriptor_from_dict(descriptor) if descriptor else None)


def change_records(session: Session, submission: Submission, deployment: Deployment, baseline: ModelVersion,
                   new: ModelVersion) -> tuple[ModelVersionRecord, ModelVersionRecord]:
    """What change control compares: the approved version under the scope approved for it, and the candidate under
    the scope it is submitted under. An amendment keeps the approved model and proposes a new scope, so a change of
    intended use or risk context is material there exactly as it is for a new version."""
    if queries.is_amendment(submission):
        return (version_record(baseline, queries.amendment_baseline(session, submission), prefer_fallback=True),
                version_record(new, submission.proposed_descriptor, prefer_fallback=True))
    return (version_record(baseline, queries.approved_descriptor(session, baseline) or deployment.descriptor,
                           prefer_fallback=True),
            version_record(new, deployment.descriptor))


def case_inputs(session: Session, submission: Submission, deployment: Deployment) -> dict:
    case = {"kind": submission.kind, "materiality": submission.materiality or "none"}
    if submission.kind == SubmissionKind.CONTINUING:
        since = session.execute(select(func.max(Submission.decided_at)).where(
            Submission.deployment_id == deployment.id,
            Submission.state.in_(["approved", "approved_with_conditions"]))).scalar_one() or deployment.created_at
        count = session.execute(select(func.count(Incident.id)).where(
            Incident.deployment_id == deployment.id, Incident.reported_at >= since)).scalar_one()
        case["incidents_since_approval"] = count > 0
    if submission.kind == SubmissionKind.INCIDENT and submission.incident_id:
        case["incident_severity"] = session.get(Incident, submission.incident_id).severity
    return case


def classify_submission(session: Session, submission: Submission, settings: Settings, *, actor: User | None,
                        now: datetime) -> Classification:
    deployment = session.get(Deployment, submission.deployment_id)
    if submission.kind == SubmissionKind.CHANGE:
        new = session.get(ModelVersion, submission.model_version_id)
        baseline = session.get(ModelVersion, submission.baseline_version_id) if submission.baseline_version_id else None
        if baseline is None:
            submission.materiality = "material"
        else:
            change = assess_change(*change_records(session, submission, deployment, baseline, new))
            submission.materiality = change["materiality"]
    descriptor = descriptor_from_dict(queries.case_descriptor(session, submission), f"deployment {deployment.id}")
    result = classify(descriptor, load_ruleset(settings.regulations_dir), case_inputs(session, submission, deployment))
    if submission.kind == SubmissionKind.CHANGE and submission.baseline_version_id:
        result["change"] = change
    classification = Classification(
        submission_id=submission.id, result=result, rules_version=result["rules_version"],
        input_sha256=result["input_sha256"], nmpa_status=result["nmpa"]["status"],
        review_as_class=result["nmpa"]["review_as_class"], pathway=result["pathway"], prohibited=result["prohibited"],
        expert_reexamination=result["expert_reexamination"], created_by_id=actor.id if actor else None,
        created_at=now)
    session.add(classification)
    session.flush()
    obligations.sync_from_classification(session, deployment, result)
    return classification
