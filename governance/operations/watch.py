"""The live watch after approval: sampled real interactions (de-identified before they are stored), graded by the
instance's judge, charted per deployment; a signal opens a ``live_watch`` incident and tells the chair.

Every change is an event: the watch configured, a batch received (counts and what was removed, never the text),
samples deleted when their retention ended, the chart's signal.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlmodel import Session

from .. import eventlog
from ..audit import graders
from ..audit.policy import SimulationRequirement
from ..config import Settings
from ..domain import DeploymentStatus, IncidentSource, Severity
from ..errors import GovernanceError
from ..models import ApiToken, AuditRun, Deployment, Interaction, LiveWatch, User
from ..monitoring import chart
from ..security import new_api_token, token_digest
from .incidents import report_incident

#: A judged sample counts as hazardous from this MedSafetyBench harm score: the simulation criterion's default.
HAZARD_AT = SimulationRequirement.model_fields["hazard_at"].default
#: Points of the chart kept for the deployment page.
CHART_POINTS = 600
MAX_BATCH = 500
#: Until an approved version's simulation says otherwise, the in-control hazard rate.
DEFAULT_BASELINE_RATE = 0.01
_sampler = random.SystemRandom()


def approved_rate(session: Session, deployment: Deployment) -> float | None:
    """The approved version's simulated hazard rate (add-one smoothed: zero hazards is not a zero rate)."""
    if deployment.approved_version_id is None:
        return None
    run = session.execute(select(AuditRun).where(AuditRun.model_version_id == deployment.approved_version_id,
                                                 AuditRun.status == "completed")
                          .order_by(AuditRun.id.desc()).limit(1)).scalars().first()
    simulated = (run.summary or {}).get("simulation") if run else None
    if not simulated or not simulated.get("answers"):
        return None
    return (simulated["hazardous"] + 1) / (simulated["answers"] + 2)


def configure_watch(session: Session, deployment: Deployment, *, sample_rate: float | None = None,
                    retention_days: int | None = None, baseline_rate: float | None = None,
                    actor: User | None, now: datetime) -> LiveWatch:
    """Start (or change) a deployment's watch; the chart is designed for its approved hazard rate."""
    watch = watch_of(session, deployment) or LiveWatch(deployment_id=deployment.id)
    if sample_rate is not None:
        watch.sample_rate = sample_rate
    if retention_days is not None:
        watch.retention_days = retention_days
    rate = baseline_rate or approved_rate(session, deployment) or watch.baseline_rate or DEFAULT_BASELINE_RATE
    try:
        design = chart.design(min(rate, 0.4))
    except ValueError as exc:
        raise GovernanceError(f"deployment {deployment.id}: {exc}") from None
    changed = (design.baseline_rate, design.limit) != (watch.baseline_rate, watch.threshold)
    watch.baseline_rate, watch.alarm_rate, watch.threshold = design.baseline_rate, design.alarm_rate, design.limit
    if changed:
        watch.statistic = 0.0  # a new chart starts from zero
    watch.updated_at = now
    session.add(watch)
    session.flush()
    eventlog.append(session, "live_watch_configured", actor=actor, deployment_id=deployment.id, occurred_at=now,
                    payload={"sample_rate": watch.sample_rate, "retention_days": watch.retention_days,
                             "chart": design.as_dict()})
    return watch


def watch_of(session: Session, deployment: Deployment) -> LiveWatch | None:
    return session.execute(select(LiveWatch).where(LiveWatch.deployment_id == deployment.id)).scalars().first()


def create_watch_token(session: Session, deployment: Deployment, user: User, *, name: str,
                       actor: User | None) -> tuple[ApiToken, str]:
    """A token that posts this deployment's interactions and nothing else (for the hospital's LLM gateway)."""
    if not user.active:
        raise GovernanceError(f"{user.email} is deactivated")
    secret = new_api_token()
    token = ApiToken(user_id=user.id, name=name.strip()[:100] or "llm-gateway", prefix=secret[:10],
                     token_sha256=token_digest(secret), scope="watch", deployment_id=deployment.id)
    session.add(token)
    session.flush()
    eventlog.append(session, "api_token_created", actor=actor, deployment_id=deployment.id, payload={
        "token": token.id, "user": user.email, "name": token.name, "scope": "watch", "prefix": token.prefix,
        "deployment": deployment.id})
    return token, secret


def _moment(value: Any, index: int) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise GovernanceError(f"interactions[{index}].timestamp: not an ISO 8601 time") from None
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.replace(minute=0, second=0, microsecond=0)


def receive(session: Session, deployment: Deployment, samples: Sequence[dict[str, Any]], *, token: ApiToken,
            now: datetime) -> dict[str, Any]:
    """Keep a sample of posted interactions, each de-identified before its row exists (the batch's event holds
    counts only). Refuses a deployment without a watch, or one not in use."""
    watch = watch_of(session, deployment)
    if watch is None:
        raise GovernanceError(f"deployment {deployment.id} has no live watch; the IRB office starts one "
                              "(govern watch configure)")
    if deployment.status not in {DeploymentStatus.ACTIVE, DeploymentStatus.SUSPENDED}:
        raise GovernanceError(f"deployment {deployment.id} is {deployment.status}: interactions are watched on "
                              "systems in use")
    if not samples or len(samples) > MAX_BATCH:
        raise GovernanceError(f"send between 1 and {MAX_BATCH} interactions per request")
    from .. import deid  # its patterns compile on first use, not when every process starts

    kept, removed = 0, Counter()
    for index, sample in enumerate(samples):
        asked_at = _moment(sample.get("timestamp"), index)
        if _sampler.random() >= watch.sample_rate:
            continue
        clean, found = deid.scrub_record({"prompt": sample["prompt"], "answer": sample["answer"]})
        removed.update(found)
        session.add(Interaction(deployment_id=deployment.id, prompt=clean["prompt"], answer=clean["answer"],
                                deid_version=deid.VERSION, removed=dict(found), asked_at=asked_at, received_at=now,
                                expires_at=now + timedelta(days=watch.retention_days)))
        kept += 1
    session.flush()
    eventlog.append(session, "interactions_received", actor=None, deployment_id=deployment.id, occurred_at=now,
                    payload={"token": token.id, "received": len(samples), "kept": kept,
                             "sample_rate": watch.sample_rate, "deid_version": deid.VERSION,
                             "removed": dict(sorted(removed.items()))})
    return {"received": len(samples), "kept": kept, "removed": dict(sorted(removed.items()))}


def expire(session: Session, watch: LiveWatch, now: datetime) -> int:
    """Delete samples whose retention ended (the deletion an event)."""
    count = session.execute(select(func.count()).select_from(Interaction).where(
        Interaction.deployment_id == watch.deployment_id, Interaction.expires_at <= now)).scalar_one()
    if count:
        session.execute(delete(Interaction).where(Interaction.deployment_id == watch.deployment_id,
                                                  Interaction.expires_at <= now))
        eventlog.append(session, "interactions_expired", actor=None, deployment_id=watch.deployment_id,
                        occurred_at=now, payload={"deleted": count, "retention_days": watch.retention_days})
    return count


def grade(session: Session, settings: Settings, watch: LiveWatch, now: datetime,
          judge: graders.Grader | None, limit: int = 2_000) -> dict[str, Any]:
    """Judge the watch's ungraded samples in arrival order, advance the chart, and open an incident on a signal."""
    pending = list(session.execute(select(Interaction).where(Interaction.deployment_id == watch.deployment_id,
                                                             Interaction.graded_at.is_(None))
                                   .order_by(Interaction.id).limit(limit)).scalars())
    if not pending:
        return {"graded": 0}
    if judge is None:
        raise GovernanceError("no judge is configured (setting judge_backend): interactions wait ungraded")
    judgements = judge.grade([graders.Case(f"watch:{i.id}", i.prompt, i.answer, clinical=True) for i in pending])
    step = chart.step_for(watch.baseline_rate, watch.alarm_rate)
    points = list(watch.chart or [])
    signal_at = None
    for interaction, judgement in zip(pending, judgements, strict=True):
        interaction.graded_at, interaction.grader = now, judge.identity()[:200]
        interaction.judgement = judgement.as_dict()
        if judgement.invalid or judgement.harm is None:
            continue  # the judge's failure, never the model's: it does not move the chart
        interaction.harm, interaction.label = judgement.harm, judgement.label or ""
        interaction.hazardous = judgement.harm >= HAZARD_AT
        watch.graded += 1
        watch.hazards += interaction.hazardous
        watch.statistic = chart.advance(watch.statistic, interaction.hazardous, step)
        points.append([watch.graded, watch.statistic, int(interaction.hazardous)])
        if watch.statistic >= watch.threshold and signal_at is None:
            signal_at = watch.graded
            watch.statistic = 0.0  # restart after a signal; the incident carries the finding
    watch.chart = points[-CHART_POINTS:]
    watch.updated_at = now
    session.flush()
    incident = _signal(session, settings, watch, signal_at, now) if signal_at is not None else None
    return {"graded": len(pending), "signal": signal_at, "incident": incident}


def _signal(session: Session, settings: Settings, watch: LiveWatch, at: int, now: datetime) -> int:
    deployment = session.get(Deployment, watch.deployment_id)
    recent = [p for p in watch.chart if p[0] <= at][-200:]
    hazards = sum(p[2] for p in recent)
    text = (f"The live watch's control chart signalled at graded sample {at}: {hazards} of the last {len(recent)} "
            f"sampled interactions were judged hazardous (harm ≥ 3 on MedSafetyBench's scale) against an approved "
            f"rate of {watch.baseline_rate:.2%} (Bernoulli CUSUM, limit {watch.threshold:g}, tuned to "
            f"{watch.alarm_rate:.2%}). The samples are on the deployment page, de-identified.")
    incident = report_incident(session, settings, deployment=deployment, severity=Severity.MODERATE.value,
                               what_happened=text, reporter=None, source=IncidentSource.LIVE_WATCH.value, now=now)
    watch.signalled_at, watch.incident_id = now, incident.id
    eventlog.append(session, "live_watch_signal", actor=None, deployment_id=deployment.id, occurred_at=now,
                    payload={"incident": incident.id, "at": at, "hazards_recent": hazards, "recent": len(recent),
                             "baseline_rate": watch.baseline_rate, "limit": watch.threshold})
    return incident.id
