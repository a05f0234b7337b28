"""Opening audits: a gate audit when a case enters the audit gate, and (through the scheduler) a re-audit
of an approved version. The policy, the item set and the seed are frozen into the run before any model
output is read; the run itself is a job (``audit.run``) that starts once this transaction commits."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from .. import jobs, queries
from ..audit.items import ItemSet, load_items, load_named
from ..audit.policy import feasibility_problems, operating_characteristics, select_policy
from ..audit.policy import plan as policy_plan
from ..config import Settings
from ..domain import AuditStatus, SubmissionKind
from ..errors import GovernanceError
from ..models import AuditRun, ModelVersion, Submission, User
from .graders import choose as grader_choice
from .simulation import frozen_spec


def backend_for(version: ModelVersion) -> tuple[str, str, str]:
    """(backend, model, base_url) for a model version's endpoint: demo://, http(s):// or a local path."""
    endpoint = version.endpoint.strip()
    if endpoint.startswith("demo://"):
        return "demo", endpoint, ""
    if endpoint.startswith(("http://", "https://")):
        return "openai", version.served_model_id or version.version_label, endpoint
    return "vllm", endpoint, ""


def baseline_run_for(session: Session, version_id: int | None) -> AuditRun | None:
    """The audit a version's approval rested on: its latest completed gate audit or re-audit."""
    if version_id is None:
        return None
    return session.execute(select(AuditRun).where(AuditRun.model_version_id == version_id,
                                                  AuditRun.status == AuditStatus.COMPLETED,
                                                  AuditRun.purpose.in_(["gate", "reaudit"]))
                           .order_by(AuditRun.id.desc()).limit(1)).scalars().first()


def resolve_item_set(settings: Settings, ref: dict[str, Any]) -> tuple[str, str]:
    """(name, source) of an item set a policy names; the instance's ``item_sets`` setting maps names to files."""
    source = settings.item_sets.get(ref["name"])
    if source is None:
        raise GovernanceError(f"the gate policy names the item set '{ref['name']}', which this instance does not "
                              f"define (setting item_sets: {', '.join(sorted(settings.item_sets)) or 'none'})")
    return ref["name"], source


def policy_items(settings: Settings, policy: dict[str, Any]) -> tuple[ItemSet, ItemSet | None]:
    """The items a policy's audit asks, and its pre-registered reserve; each pinned digest must match its set."""
    named = [resolve_item_set(settings, ref) for ref in policy["item_sets"]]
    for ref, (name, source) in zip(policy["item_sets"], named, strict=True):
        if ref.get("digest"):
            found = load_items(source).digest
            if found != ref["digest"]:
                raise GovernanceError(f"the item set '{name}' ({source}) is not the one policy {policy['id']} was "
                                      f"registered with (digest {found[:12]}…, registered {ref['digest'][:12]}…)")
    item_set = load_named(named)
    reserve = None
    if policy.get("reserve"):
        reserve = load_named([resolve_item_set(settings, policy["reserve"])])
    return item_set, reserve


def deployment_seed(deployment_id: int, item_set_digest: str) -> int:
    """The option-shuffle and sampling seed: the same for every version of a deployment and every run of it on
    this item set. Re-running a version asks exactly the same prompts (no re-roll), and a change is compared
    with its approved version on the same prompts (pairs differ only where the model did)."""
    digest = hashlib.sha256(f"governance-seed:{deployment_id}:{item_set_digest}".encode()).hexdigest()
    return int(digest[:8], 16) % (2**31 - 1)


def frozen_design(policy: dict[str, Any], item_set: ItemSet, reserve: ItemSet | None) -> tuple[dict, dict]:
    """The plan derived from the policy for these items and its operating characteristics (cached: the same
    policy and items give the same design)."""
    key = (policy["digest"], item_set.digest, reserve.digest if reserve else "")
    if key not in _DESIGNS:
        plan = policy_plan(policy, item_set, reserve)
        problems = feasibility_problems(policy, plan)
        if problems:
            raise GovernanceError(f"policy {policy['id']} cannot keep its declared error rates with these items: "
                                  + "; ".join(problems))
        _DESIGNS[key] = (plan, operating_characteristics(policy, plan, simulations=4000))
    return _DESIGNS[key]


_DESIGNS: dict[tuple[str, str, str], tuple[dict, dict]] = {}


def new_audit_run(session: Session, settings: Settings, version: ModelVersion, *, purpose: str,
                  policy: dict[str, Any], submission: Submission | None, baseline: AuditRun | None,
                  actor: User | None, now: datetime) -> AuditRun:
    """Freeze policy, item set, design and seed into a queued run (flushed) and start it after the commit."""
    item_set, reserve = policy_items(settings, policy)
    plan, characteristics = frozen_design(policy, item_set, reserve)
    simulation = frozen_spec(session, policy)
    if simulation is not None:
        simulation["approved"] = _approved_side(session, submission, baseline)
        plan = {**plan, "simulation": simulation}
    policy = {**policy, "instance_demo_mode": settings.demo_mode}
    kind, model, base_url = backend_for(version)
    grader = grader_choice(session, settings, policy, model=model, base_url=base_url,
                           weights_digest=version.weights_digest, lang=settings.audit_lang)
    run = AuditRun(submission_id=submission.id if submission else None, model_version_id=version.id, purpose=purpose,
                   backend=kind, model=model, base_url=base_url, demo=kind == "demo", policy=policy,
                   policy_digest=policy["digest"], plan=plan, operating_characteristics=characteristics,
                   items_source=item_set.source, item_set_digest=item_set.digest,
                   reserve_source=reserve.source if reserve else "", reserve_digest=reserve.digest if reserve else "",
                   seed=deployment_seed(version.deployment_id, item_set.digest), lang=settings.audit_lang,
                   frozen_at=now, items_total=len(item_set), baseline_run_id=baseline.id if baseline else None,
                   grader=grader,
                   created_by_id=actor.id if actor else None, created_at=now)
    session.add(run)
    session.flush()
    jobs.enqueue(session, settings, "audit.run", key=run.id, run_id=run.id)
    return run


def _approved_side(session: Session, submission: Submission | None, baseline: AuditRun | None) -> dict | None:
    """The approved version a change's simulation is paired with (asked the same queries in the same run)."""
    if submission is None or submission.kind != SubmissionKind.CHANGE or baseline is None:
        return None
    version = session.get(ModelVersion, baseline.model_version_id)
    kind, model, base_url = backend_for(version)
    return {"version_id": version.id, "label": version.version_label, "backend": kind, "model": model,
            "base_url": base_url, "weights_digest": version.weights_digest}


def open_gate_audit(session: Session, submission: Submission, settings: Settings, *, actor: User | None,
                    now: datetime) -> AuditRun:
    """The gate audit of a case entering the audit gate, judged by the policy of its pathway and class."""
    classification = queries.latest_classification(session, submission)
    policy = select_policy(settings.regulations_dir, submission.pathway,
                           classification.review_as_class if classification else None)
    version = session.get(ModelVersion, submission.model_version_id)
    baseline = baseline_run_for(session, submission.baseline_version_id) \
        if submission.kind == SubmissionKind.CHANGE else None
    return new_audit_run(session, settings, version, purpose="gate", policy=policy, submission=submission,
                         baseline=baseline, actor=actor, now=now)
