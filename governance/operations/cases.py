"""Registering deployments and model versions, opening cases, recording obligation status."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from .. import eventlog, obligations
from ..classification.descriptor import canonical_sha256, descriptor_from_dict
from ..datafiles import DataFileError
from ..domain import SubmissionKind
from ..models import Deployment, ModelVersion, Submission, User, utcnow
from ..permissions import roles_of
from ..workflow import SubmissionState
from .engine import GovernanceError

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _validated(descriptor: dict[str, Any]) -> dict[str, Any]:
    try:
        return descriptor_from_dict(descriptor, "descriptor").model_dump()
    except DataFileError as exc:
        raise GovernanceError(f"descriptor: {exc.key or 'descriptor'}: {exc.message}") from None


def register_deployment(session: Session, descriptor: dict[str, Any], *, owner: User) -> Deployment:
    clean = _validated(descriptor)
    deployment = Deployment(name=clean["name"], descriptor=clean, descriptor_sha256=canonical_sha256(clean),
                            scenario=clean["scenario"], public_facing=clean["public_facing"],
                            generative=clean["generative"], owner_id=owner.id)
    session.add(deployment)
    session.flush()
    eventlog.append(session, "deployment_registered", actor=owner, deployment_id=deployment.id,
                    to_state=deployment.status, payload={"name": deployment.name, "scenario": deployment.scenario,
                                                         "descriptor_sha256": deployment.descriptor_sha256})
    return deployment


def update_descriptor(session: Session, deployment: Deployment, descriptor: dict[str, Any], *, actor: User) -> None:
    clean = _validated(descriptor)
    before = deployment.descriptor_sha256
    deployment.descriptor = clean
    deployment.descriptor_sha256 = canonical_sha256(clean)
    deployment.name, deployment.scenario = clean["name"], clean["scenario"]
    deployment.public_facing, deployment.generative = clean["public_facing"], clean["generative"]
    deployment.updated_at = utcnow()
    session.flush()
    eventlog.append(session, "descriptor_updated", actor=actor, deployment_id=deployment.id,
                    payload={"before_sha256": before, "after_sha256": deployment.descriptor_sha256})


def add_model_version(session: Session, deployment: Deployment, *, actor: User, version_label: str, base_model: str,
                      weights_digest: str, endpoint: str, architecture: str = "", tokenizer_digest: str = "",
                      system_prompt_digest: str = "", quantization: str = "", served_model_id: str = "",
                      serving_config: dict | None = None, finetune_data_summary: str = "",
                      finetune_data_categories: list[str] | None = None, change_summary: str = "",
                      continuous_learning: bool = False) -> ModelVersion:
    if not version_label.strip():
        raise GovernanceError("a model version needs a version label")
    weights_digest = weights_digest.strip().lower()
    if not _SHA256.match(weights_digest):
        raise GovernanceError("weights_digest must be a sha256 hex digest (64 characters) of the model files")
    for name, value in (("tokenizer_digest", tokenizer_digest), ("system_prompt_digest", system_prompt_digest)):
        if value and not _SHA256.match(value.strip().lower()):
            raise GovernanceError(f"{name} must be a sha256 hex digest or empty")
    exists = session.execute(select(ModelVersion.id).where(ModelVersion.deployment_id == deployment.id,
                                                           ModelVersion.version_label == version_label)).first()
    if exists:
        raise GovernanceError(f"deployment {deployment.id} already has a version '{version_label}'")
    previous = session.execute(select(ModelVersion).where(ModelVersion.deployment_id == deployment.id)
                               .order_by(ModelVersion.id.desc()).limit(1)).scalars().first()
    version = ModelVersion(
        deployment_id=deployment.id, version_label=version_label.strip(), base_model=base_model.strip(),
        architecture=architecture, weights_digest=weights_digest, tokenizer_digest=tokenizer_digest.strip().lower(),
        system_prompt_digest=system_prompt_digest.strip().lower(), quantization=quantization,
        serving_config=serving_config or {}, endpoint=endpoint.strip(), served_model_id=served_model_id.strip(),
        finetune_data_summary=finetune_data_summary, finetune_data_categories=sorted(set(finetune_data_categories or [])),
        change_summary=change_summary, continuous_learning=continuous_learning, descriptor=dict(deployment.descriptor),
        previous_version_id=previous.id if previous else None, created_by_id=actor.id)
    session.add(version)
    session.flush()
    eventlog.append(session, "model_version_registered", actor=actor, deployment_id=deployment.id, payload={
        "model_version": version.id, "version_label": version.version_label, "base_model": version.base_model,
        "weights_digest": version.weights_digest, "tokenizer_digest": version.tokenizer_digest,
        "endpoint": version.endpoint})
    return version


def open_submission(session: Session, *, kind: str, deployment: Deployment, model_version: ModelVersion,
                    submitter: User, title: str, summary: str = "", incident_id: int | None = None) -> Submission:
    """A new case in draft. A change is compared with the deployment's approved version (its baseline)."""
    if kind not in {k.value for k in SubmissionKind}:
        raise GovernanceError(f"unknown submission kind '{kind}'")
    if model_version.deployment_id != deployment.id:
        raise GovernanceError("the model version belongs to another deployment")
    if kind == SubmissionKind.CHANGE and deployment.approved_version_id is None:
        raise GovernanceError("a change needs an approved version to compare with; submit an initial review first")
    if kind == SubmissionKind.CHANGE and deployment.approved_version_id == model_version.id:
        raise GovernanceError("this version is the approved one; a change submits a new version")
    if kind in {SubmissionKind.INITIAL, SubmissionKind.CHANGE} and \
            "submitter" not in roles_of(session, submitter) and "irb_chair" not in roles_of(session, submitter):
        raise GovernanceError("only submitters open initial and change submissions")
    submission = Submission(kind=kind, deployment_id=deployment.id, model_version_id=model_version.id,
                            baseline_version_id=deployment.approved_version_id if kind != SubmissionKind.INITIAL
                            else None, title=(title.strip() or f"{deployment.name} {model_version.version_label}")[:300],
                            summary=summary, submitter_id=submitter.id, incident_id=incident_id)
    session.add(submission)
    session.flush()
    eventlog.append(session, "submission_created", actor=submitter, submission_id=submission.id,
                    deployment_id=deployment.id, to_state=SubmissionState.DRAFT.value, payload={
                        "kind": kind, "model_version": model_version.version_label,
                        "weights_digest": model_version.weights_digest, "title": submission.title})
    return submission


def record_obligation_status(session: Session, deployment: Deployment, obligation_id: str, status: str, *,
                             evidence: str, reference: str, actor: User) -> None:
    try:
        row = obligations.set_status(session, deployment, obligation_id, status, evidence=evidence,
                                     reference=reference, actor=actor)
    except ValueError as exc:
        raise GovernanceError(str(exc)) from None
    eventlog.append(session, "obligation_status_recorded", actor=actor, deployment_id=deployment.id, payload={
        "obligation": obligation_id, "status": row.status, "evidence": row.evidence, "reference": row.reference})
