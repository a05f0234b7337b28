"""Registering deployments and model versions, opening cases, recording obligation status."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlmodel import Session

from .. import endpoints, eventlog, obligations, queries
from ..classification.descriptor import canonical_sha256
from ..config import Settings
from ..domain import DeploymentStatus, Role, SubmissionKind
from ..models import Deployment, ModelVersion, Submission, User, utcnow
from ..notify import notify, people_with_roles, step_subject
from ..permissions import can_manage_deployment, roles_of
from ..errors import GovernanceError, NotPermitted, TransitionRefused
from ..schemas import ModelVersionIn
from ..workflow import SubmissionState
from .descriptors import changed_fields, validated, write_descriptor
from .engine import fire


def register_deployment(session: Session, descriptor: dict[str, Any], *, owner: User) -> Deployment:
    clean = validated(descriptor)
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
    """Edit the descriptor of a deployment never approved. Once the committee approved a scope, the descriptor is
    read-only: a change to it is an amendment (:func:`propose_amendment`) reviewed like any change."""
    if queries.has_approved_scope(deployment):
        raise GovernanceError(f"deployment {deployment.id} has an approved scope: its descriptor changes only through "
                              "an approved amendment")
    clean = validated(descriptor)
    before = deployment.descriptor_sha256
    write_descriptor(deployment, clean, now=utcnow())
    session.flush()
    eventlog.append(session, "descriptor_updated", actor=actor, deployment_id=deployment.id,
                    payload={"before_sha256": before, "after_sha256": deployment.descriptor_sha256})


def propose_amendment(session: Session, settings: Settings, deployment: Deployment, descriptor: dict[str, Any], *,
                      actor: User, summary: str = "") -> Submission:
    """Open and submit the change case that asks the committee to approve a new descriptor for an approved
    deployment. The approved scope stays in force (descriptor, status, approved version) until the case is approved;
    the chair and the IRB office are told. One amendment per deployment is open at a time."""
    if not can_manage_deployment(session, actor, deployment):
        raise NotPermitted("only the deployment's owner or the chair proposes an amendment to it")
    if not queries.has_approved_scope(deployment):
        raise GovernanceError("only an approved deployment is amended; edit the descriptor of this one directly")
    if deployment.status == DeploymentStatus.RETIRED:
        raise GovernanceError("a retired deployment is not amended")
    session.execute(select(Deployment.id).where(Deployment.id == deployment.id).with_for_update())
    pending = queries.open_amendment(session, deployment)
    if pending is not None:
        raise GovernanceError(f"amendment #{pending.id} to this deployment is still in review: it must be decided or "
                              "withdrawn before another is proposed")
    clean = validated(descriptor)
    approved = dict(deployment.descriptor)
    changed = changed_fields(approved, clean)
    if not changed:
        raise GovernanceError("the proposed descriptor is the approved one: there is nothing to amend")
    case = open_submission(session, kind=SubmissionKind.CHANGE.value, deployment=deployment,
                           model_version=session.get(ModelVersion, deployment.approved_version_id), submitter=actor,
                           title=f"{deployment.name} — amendment", summary=summary, proposed_descriptor=clean)
    eventlog.append(session, "amendment_proposed", actor=actor, submission_id=case.id, deployment_id=deployment.id,
                    payload={"before_sha256": deployment.descriptor_sha256,
                             "after_sha256": case.proposed_descriptor_sha256, "changed_fields": changed,
                             "approved_descriptor": approved})
    fire(session, case, "submit", actor, settings=settings)
    office = [p for p in people_with_roles(session, Role.IRB_CHAIR) if p.id != actor.id]
    notify(session, settings, office, kind="amendment",
           subject=step_subject("amendment", case=case.id, deployment=deployment.name),
           body=summary or ", ".join(changed), link=f"/submissions/{case.id}")
    return case


#: States in which an amendment waits for its submitter, who may revise the proposed descriptor and resubmit.
REVISABLE_STATES = frozenset({SubmissionState.RETURNED.value, SubmissionState.REVISIONS_REQUIRED.value})


def revise_amendment(session: Session, case: Submission, descriptor: dict[str, Any], *, actor: User) -> None:
    """Change the descriptor an amendment proposes while it waits for its submitter (returned by screening, or
    revisions required); the case is then resubmitted and classified again with it."""
    if not queries.is_amendment(case):
        raise GovernanceError(f"case #{case.id} is not an amendment")
    if actor.id != case.submitter_id:
        raise NotPermitted("only the person who proposed the amendment revises it")
    if case.state not in REVISABLE_STATES:
        raise GovernanceError(f"amendment #{case.id} is {case.state.replace('_', ' ')}: it is revised only when it "
                              "is returned to its submitter or revisions are required")
    clean = validated(descriptor)
    baseline = queries.amendment_baseline(session, case)
    if not changed_fields(baseline, clean):
        raise GovernanceError("the proposed descriptor is the approved one: withdraw the amendment instead")
    before, revised = case.proposed_descriptor, changed_fields(case.proposed_descriptor, clean)
    if not revised:
        raise GovernanceError("the proposed descriptor is unchanged")
    case.proposed_descriptor = clean
    case.proposed_descriptor_sha256 = canonical_sha256(clean)
    case.updated_at = utcnow()
    session.flush()
    eventlog.append(session, "amendment_revised", actor=actor, submission_id=case.id, deployment_id=case.deployment_id,
                    payload={"before_sha256": canonical_sha256(before), "after_sha256": case.proposed_descriptor_sha256,
                             "revised_fields": revised, "changed_fields": changed_fields(baseline, clean)})


def validated_version(fields: dict[str, Any] | ModelVersionIn) -> ModelVersionIn:
    """The model-version input checked against its one schema; the error names the field."""
    if isinstance(fields, ModelVersionIn):
        return fields
    try:
        return ModelVersionIn.model_validate(fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "model version"
        message = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
        raise GovernanceError(f"{where}: {message}") from None


def add_model_version(session: Session, deployment: Deployment, *, actor: User,
                      version: ModelVersionIn | None = None, **fields: Any) -> ModelVersion:
    """Record a model version of ``deployment`` (given as a validated ``version``, or as its fields)."""
    clean = validated_version(version if version is not None else fields)
    version_label = clean.version_label
    exists = session.execute(select(ModelVersion.id).where(ModelVersion.deployment_id == deployment.id,
                                                           ModelVersion.version_label == version_label)).first()
    if exists:
        raise GovernanceError(f"deployment {deployment.id} already has a version '{version_label}'")
    previous = session.execute(select(ModelVersion).where(ModelVersion.deployment_id == deployment.id)
                               .order_by(ModelVersion.id.desc()).limit(1)).scalars().first()
    version = ModelVersion(
        deployment_id=deployment.id, **clean.model_dump(exclude={"finetune_data_categories"}),
        finetune_data_categories=sorted(set(clean.finetune_data_categories)), descriptor=dict(deployment.descriptor),
        previous_version_id=previous.id if previous else None, created_by_id=actor.id)
    session.add(version)
    session.flush()
    eventlog.append(session, "model_version_registered", actor=actor, deployment_id=deployment.id, payload={
        "model_version": version.id, "version_label": version.version_label, "base_model": version.base_model,
        "weights_digest": version.weights_digest, "tokenizer_digest": version.tokenizer_digest,
        "endpoint": version.endpoint})
    return version


def submit_model_version(session: Session, settings: Settings, deployment: Deployment, *, actor: User,
                         version: ModelVersionIn | dict[str, Any], kind: str, title: str = "", summary: str = "",
                         submit: bool = True) -> Submission:
    """The one way a model version enters review (the web form, the API, `govern submit`): its owner or the chair
    records the version, opens its case and, unless it is kept as a draft, submits it."""
    if not can_manage_deployment(session, actor, deployment):
        raise NotPermitted("only the deployment's owner or the chair submits its model versions")
    clean = validated_version(version)
    endpoints.check_submitted(clean.endpoint, settings)  # a submitter's endpoint reaches only what is allowed
    recorded = add_model_version(session, deployment, actor=actor, version=clean)
    case = open_submission(session, kind=kind, deployment=deployment, model_version=recorded, submitter=actor,
                           title=title, summary=summary)
    if submit:
        fire(session, case, "submit", actor, settings=settings)
        if settings.auto_screen_changes and case.kind == SubmissionKind.CHANGE:
            auto_screen(session, settings, case)
    return case


def auto_screen(session: Session, settings: Settings, case: Submission) -> bool:
    """Let the system screen and route a routine change (see the ``auto_screen`` transition). The guards run before
    anything is written, so a case the rule does not cover stays in the IRB office's intake, with the reason in
    its history."""
    try:
        fire(session, case, "auto_screen", None, settings=settings)
        return True
    except TransitionRefused as exc:
        eventlog.append(session, "auto_screen_declined", actor=None, submission_id=case.id,
                        deployment_id=case.deployment_id, payload={"guard": exc.guard, "reason": str(exc.reason)})
        return False


def open_continuing_review(session: Session, deployment: Deployment, *, actor: User | None, title: str = "",
                           summary: str = "") -> tuple[Submission, bool]:
    """The deployment's open continuing-review case, opened in draft for its owner when there is none (by the
    owner or the chair, or by the scheduler with the first reminder). Returns the case and whether it is new."""
    if actor is not None and not can_manage_deployment(session, actor, deployment):
        raise NotPermitted("only the deployment's owner or the chair opens its continuing review")
    existing = queries.open_continuing_review(session, deployment)
    if existing is not None:
        return existing, False
    if deployment.approved_version_id is None:
        raise GovernanceError("only an approved deployment has a continuing review")
    case = open_submission(session, kind=SubmissionKind.CONTINUING.value, deployment=deployment,
                           model_version=session.get(ModelVersion, deployment.approved_version_id),
                           submitter=session.get(User, deployment.owner_id),
                           title=title or f"{deployment.name} — continuing review", summary=summary)
    return case, True


def open_submission(session: Session, *, kind: str, deployment: Deployment, model_version: ModelVersion,
                    submitter: User, title: str, summary: str = "", incident_id: int | None = None,
                    proposed_descriptor: dict[str, Any] | None = None) -> Submission:
    """A new case in draft. A change is compared with the deployment's approved version (its baseline); an
    amendment (a ``proposed_descriptor``) is a change of the approved version's scope, not of its model."""
    if kind not in {k.value for k in SubmissionKind}:
        raise GovernanceError(f"unknown submission kind '{kind}'")
    if model_version.deployment_id != deployment.id:
        raise GovernanceError("the model version belongs to another deployment")
    if kind == SubmissionKind.CHANGE and deployment.approved_version_id is None:
        raise GovernanceError("a change needs an approved version to compare with; submit an initial review first")
    if proposed_descriptor is not None and (kind != SubmissionKind.CHANGE or
                                            deployment.approved_version_id != model_version.id):
        raise GovernanceError("an amendment is a change of the approved version's scope")
    if kind == SubmissionKind.CHANGE and deployment.approved_version_id == model_version.id and \
            proposed_descriptor is None:
        raise GovernanceError("this version is the approved one; a change submits a new version")
    if kind in {SubmissionKind.INITIAL, SubmissionKind.CHANGE} and \
            "submitter" not in roles_of(session, submitter) and "irb_chair" not in roles_of(session, submitter):
        raise GovernanceError("only submitters open initial and change submissions")
    submission = Submission(kind=kind, deployment_id=deployment.id, model_version_id=model_version.id,
                            baseline_version_id=deployment.approved_version_id if kind != SubmissionKind.INITIAL
                            else None, title=(title.strip() or f"{deployment.name} {model_version.version_label}")[:300],
                            summary=summary, submitter_id=submitter.id, incident_id=incident_id,
                            proposed_descriptor=proposed_descriptor,
                            proposed_descriptor_sha256=canonical_sha256(proposed_descriptor)
                            if proposed_descriptor is not None else None)
    session.add(submission)
    session.flush()
    eventlog.append(session, "submission_created", actor=submitter, submission_id=submission.id,
                    deployment_id=deployment.id, to_state=SubmissionState.DRAFT.value, payload={
                        "kind": kind, "amendment": proposed_descriptor is not None,
                        "model_version": model_version.version_label,
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
