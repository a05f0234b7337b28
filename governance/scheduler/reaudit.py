"""Scheduled re-audits: the approved model version, audited again with the step-3 audit and compared
with the audit its approval rested on (paired McNemar per dimension, Holm-adjusted, and bootstrap
non-inferiority). A significant regression, or a re-audit that now fails the gate policy, opens an
incident and tells the chair; the integrity check before each re-audit suspends a deployment whose
served files are not the approved ones.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from .. import eventlog, queries
from ..audit.policy import select_policy
from ..config import Settings
from ..domain import AuditStatus, DeploymentStatus, IncidentSource, Role, SuspensionCause
from ..models import AuditRun, Deployment, ModelVersion, Submission, utcnow
from ..monitoring.integrity import check_served_model
from ..monitoring.policy import load_monitoring
from ..notify import notify, people_with_roles
from ..operations.audits import new_audit_run
from ..operations.engine import fire
from ..operations.incidents import report_incident

APPROVED_STATES = ("approved", "approved_with_conditions")


def approving_case(session: Session, deployment: Deployment) -> Submission | None:
    """The latest approved case of the deployment's approved version (its pathway and class set the policy)."""
    return session.execute(select(Submission).where(
        Submission.model_version_id == deployment.approved_version_id, Submission.state.in_(APPROVED_STATES))
        .order_by(Submission.decided_at.desc(), Submission.id.desc()).limit(1)).scalars().first()


def approved_baseline(session: Session, version: ModelVersion) -> AuditRun | None:
    """The audit the approval rested on: the version's latest completed gate audit (else its latest re-audit)."""
    for purposes in (["gate"], ["gate", "reaudit"]):
        found = session.execute(select(AuditRun).where(
            AuditRun.model_version_id == version.id, AuditRun.status == AuditStatus.COMPLETED,
            AuditRun.purpose.in_(purposes)).order_by(AuditRun.id.desc()).limit(1)).scalars().first()
        if found is not None:
            return found
    return None


def reaudit_in_flight(session: Session, version: ModelVersion) -> AuditRun | None:
    return session.execute(select(AuditRun).where(
        AuditRun.model_version_id == version.id, AuditRun.purpose == "reaudit",
        AuditRun.status.in_([AuditStatus.QUEUED, AuditStatus.RUNNING])).limit(1)).scalars().first()


def _policy(session: Session, settings: Settings, deployment: Deployment, baseline: AuditRun | None) -> dict:
    if baseline is not None and baseline.policy:
        return dict(baseline.policy)  # judged as the approval was judged
    case = approving_case(session, deployment)
    classification = queries.latest_classification(session, case) if case else None
    return select_policy(settings.regulations_dir, (case.pathway if case else None) or "full_board",
                         classification.review_as_class if classification else None)


def start_reaudit(session: Session, settings: Settings, deployment: Deployment, *, now: datetime) -> dict[str, Any]:
    """Check integrity, then queue a re-audit of the approved version (flushed; dispatched after commit).

    Returns what happened: ``{"integrity": ..., "run": id | None, "suspended": bool}``.
    """
    version = queries.approved_version(session, deployment)
    interval = load_monitoring(settings.regulations_dir).reaudit
    deployment.next_reaudit_at = now + timedelta(days=interval.interval_days)
    check = check_served_model(version)
    eventlog.append(session, "integrity_checked", actor=None, deployment_id=deployment.id,
                    payload={"model_version": version.version_label, **check.as_dict()}, occurred_at=now)
    outcome: dict[str, Any] = {"deployment": deployment.id, "integrity": check.status, "run": None,
                               "suspended": False}
    if check.mismatch:
        fire(session, deployment, "suspend", None, {
            "reason": f"model changed without change control: {check.detail}",
            "cause": SuspensionCause.INTEGRITY.value}, settings=settings, now=now)
        report_incident(session, settings, deployment=deployment, model_version=version,
                        severity=interval.integrity_incident_severity, reporter=None,
                        source=IncidentSource.INTEGRITY.value, now=now,
                        what_happened=f"Scheduled integrity check: model changed without change control. {check.detail}.")
        outcome["suspended"] = True
        return outcome
    if check.status == "unreadable":
        notify(session, settings, people_with_roles(session, Role.IRB_CHAIR), kind="integrity",
               subject=f"Integrity of {deployment.name} could not be checked", body=check.detail,
               link=f"/deployments/{deployment.id}", dedupe_key=f"integrity-unreadable:{deployment.id}:{now.date()}",
               now=now)
    if reaudit_in_flight(session, version) is not None:
        outcome["run"] = "already running"
        return outcome
    baseline = approved_baseline(session, version)
    policy = _policy(session, settings, deployment, baseline)
    run = new_audit_run(session, settings, version, purpose="reaudit", policy=policy, submission=None,
                        baseline=baseline, actor=None, now=now)
    eventlog.append(session, "reaudit_started", actor=None, deployment_id=deployment.id, payload={
        "audit_run": run.id, "model_version": version.version_label, "weights_digest": version.weights_digest,
        "baseline_run": run.baseline_run_id, "policy_id": policy.get("id"), "policy_digest": run.policy_digest,
        "item_set_digest": run.item_set_digest, "seed": run.seed}, occurred_at=now)
    outcome["run"] = run.id
    return outcome


def significant_regression(summary: dict[str, Any]) -> list[str]:
    """Why a re-audit counts as a regression against the approved baseline (empty when it does not)."""
    reasons = []
    regression = summary.get("regression")
    if regression:
        for test in regression.get("tests", []):
            if not test["declined"]:
                continue
            code = test["test"].removeprefix("decline:")
            entry = regression["dimensions"].get(code)
            change = (f"{entry['baseline_accuracy']:.1%} → {entry['accuracy']:.1%} " if entry else "")
            reasons.append(f"{code}: {change}({test['worse']} answers worse, {test['better']} better; exact "
                           f"McNemar p = {test['p_value']:.3g}, weighted Holm)")
    detail = summary.get("verdict_detail") or {}
    if detail.get("verdict") == "fail":
        reasons.append("the re-audit fails the gate policy: " + "; ".join(detail.get("failing", [])))
    return reasons


def review_reaudit(session: Session, settings: Settings, run: AuditRun, *, now: datetime | None = None) -> dict:
    """Judge a finished re-audit once: record it, and open an incident on a significant regression."""
    summary = dict(run.summary or {})
    if run.purpose != "reaudit" or run.review or \
            run.status not in {AuditStatus.COMPLETED, AuditStatus.FAILED, AuditStatus.ERROR}:
        return dict(run.review or {})
    # A re-audit started by a tick run with --now (a controlled clock) is reviewed on that clock too.
    now = now or max(utcnow(), run.created_at)
    version = session.get(ModelVersion, run.model_version_id)
    deployment = session.get(Deployment, version.deployment_id)
    chairs = people_with_roles(session, Role.IRB_CHAIR)
    reasons = significant_regression(summary) if run.status == AuditStatus.COMPLETED else []
    review: dict[str, Any] = {"reviewed_at": eventlog.format_timestamp(now), "regression": reasons, "incident": None}
    overall = (summary.get("overall") or {}).get("accuracy")
    if run.status in {AuditStatus.FAILED, AuditStatus.ERROR}:
        notify(session, settings, chairs, kind="reaudit", subject=f"Re-audit of {deployment.name} did not finish",
               body=run.error, link=f"/deployments/{deployment.id}", now=now)
    elif reasons and deployment.status != DeploymentStatus.RETIRED:
        severity = load_monitoring(settings.regulations_dir).reaudit.regression_incident_severity
        incident = report_incident(
            session, settings, deployment=deployment, model_version=version, severity=severity, reporter=None,
            source=IncidentSource.REAUDIT.value, now=now,
            what_happened=f"Scheduled re-audit #{run.id} shows a significant regression against the approved "
                          f"baseline (audit #{run.baseline_run_id}): " + "; ".join(reasons))
        review["incident"] = incident.id
    run.review = review
    eventlog.append(session, "reaudit_completed", actor=None, deployment_id=deployment.id, payload={
        "audit_run": run.id, "status": run.status, "verdict": run.verdict, "accuracy": overall,
        "baseline_run": run.baseline_run_id, "regression": reasons, "incident": review["incident"],
        "error": run.error or None}, occurred_at=now)
    session.flush()
    return review


def unreviewed_reaudits(session: Session) -> list[int]:
    """Finished re-audits not yet judged (a worker on another host, or a crash before the review)."""
    runs = session.execute(select(AuditRun.id, AuditRun.review).where(
        AuditRun.purpose == "reaudit", AuditRun.status.in_([AuditStatus.COMPLETED, AuditStatus.FAILED]))
        .order_by(AuditRun.id.desc()).limit(500)).all()
    return sorted(run_id for run_id, review in runs if not review)
