"""Opening audits: a gate audit when a case enters the audit gate, and (through the scheduler) a re-audit
of an approved version. The policy, the item set and the seed are frozen into the run before any model
output is read; the run itself is a job (``audit.run``) that starts once this transaction commits."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from .. import jobs, queries
from ..audit.items import load_items
from ..audit.policy import select_policy
from ..config import Settings
from ..domain import AuditStatus, SubmissionKind
from ..models import AuditRun, ModelVersion, Submission, User


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


def new_audit_run(session: Session, settings: Settings, version: ModelVersion, *, purpose: str,
                  policy: dict[str, Any], submission: Submission | None, baseline: AuditRun | None,
                  actor: User | None, now: datetime) -> AuditRun:
    """Freeze policy, item set and seed into a queued run (flushed) and start it after the commit."""
    item_set = load_items(settings.audit_items)
    policy = {**policy, "instance_demo_mode": settings.demo_mode}
    kind, model, base_url = backend_for(version)
    run = AuditRun(submission_id=submission.id if submission else None, model_version_id=version.id, purpose=purpose,
                   backend=kind, model=model, base_url=base_url, demo=kind == "demo", policy=policy,
                   items_source=item_set.source, item_set_digest=item_set.digest, seed=secrets.randbelow(2**31 - 1),
                   lang=settings.audit_lang, frozen_at=now, items_total=len(item_set),
                   baseline_run_id=baseline.id if baseline else None, created_by_id=actor.id if actor else None,
                   created_at=now)
    session.add(run)
    session.flush()
    jobs.enqueue(session, settings, "audit.run", key=run.id, run_id=run.id)
    return run


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
