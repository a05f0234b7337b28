"""The watch after approval, one pass at a time.

:func:`tick` does everything that is due at ``now``: continuing-review reminders (each once), the
automatic suspension of deployments whose continuing review is past due, the expiry of those left
suspended too long, scheduled re-audits (integrity first), the review of finished re-audits, resuming
stalled audits, dossiers still to emit, a signed checkpoint of the event log's head when the log grew (see
:mod:`governance.anchor`), e-mail still to send, and the daily digests of those who chose them. Each step
commits on its own, so a failure in one deployment never loses another's work, and running a pass twice
changes nothing more. ``govern scheduler tick [--now]`` runs one pass (cron, tests); ``govern scheduler run`` loops;
Celery beat runs it when a broker is configured.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from .. import anchor, jobs, queries
from ..audit.store import errored_runs, stale_runs
from ..config import Settings
from ..db import make_session_factory
from ..domain import ConditionStatus, DeploymentStatus, Role, SuspensionCause
from ..dossier.keys import SigningKeyError, paths as key_paths
from ..errors import GovernanceError
from ..gate import retry_due
from ..models import ApprovalCondition, AuditRun, Deployment, LiveWatch, Submission, User, utcnow
from ..monitoring.policy import load_monitoring
from ..notify import notify, people_with_roles, send_digests, send_emails, step_kind, step_subject
from ..operations.cases import open_continuing_review
from ..operations.dossiers import emit_pending, pending
from ..operations.engine import fire
from ..operations.graders import configured_judge
from ..operations.watch import expire as expire_samples, grade as grade_samples
from .reaudit import review_reaudit, start_reaudit, unreviewed_reaudits

log = logging.getLogger(__name__)
#: An audit without a heartbeat for this long is taken to have lost its worker and is resumed.
STALE_AUDIT_AFTER = timedelta(minutes=15)
#: The owner of a condition of approval is reminded this long before its due date.
CONDITION_REMINDER = timedelta(days=14)


@dataclass
class TickReport:
    now: datetime
    reminders: list[dict[str, Any]] = field(default_factory=list)
    suspended: list[dict[str, Any]] = field(default_factory=list)
    expired: list[dict[str, Any]] = field(default_factory=list)
    reaudits: list[dict[str, Any]] = field(default_factory=list)
    reviewed: list[dict[str, Any]] = field(default_factory=list)
    resumed_audits: list[int] = field(default_factory=list)
    dossiers: int = 0
    #: The sequence number a signed checkpoint of the event log anchored in this pass.
    checkpoint: int | None = None
    emails: int = 0
    #: Daily digests e-mailed to the people who chose them (one a day each).
    digests: int = 0
    #: Conditions of approvals: reminders sent and deployments suspended for an overdue blocking one.
    conditions: list[dict[str, Any]] = field(default_factory=list)
    #: The live watch: samples deleted and graded per deployment, signals.
    watch: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"scheduler pass at {self.now.isoformat(timespec='seconds')}"]
        out += [f"  reminder: {r['deployment_name']} — continuing review due {r['due']} ({r['days_left']} days; "
                f"{r['window']}-day reminder to {r['recipients']} people)" for r in self.reminders]
        out += [f"  suspended: {s['deployment_name']} — {s['reason']}" for s in self.suspended]
        out += [f"  expired: {e['deployment_name']} — {e['reason']}" for e in self.expired]
        out += [f"  re-audit: deployment {r['deployment']} integrity {r['integrity']}"
                + (f", run {r['run']}" if r.get("run") else "") + (" — SUSPENDED" if r.get("suspended") else "")
                for r in self.reaudits]
        out += [f"  re-audit reviewed: run {r['run']}" + (f" — regression, incident #{r['incident']}"
                                                          if r.get("incident") else " — no significant regression")
                for r in self.reviewed]
        if self.resumed_audits:
            out.append(f"  resumed audits: {', '.join(map(str, self.resumed_audits))}")
        for c in self.conditions:
            out.append(f"  condition {c['condition']}: owner reminded" if c.get("reminded") else
                       f"  suspended: deployment {c['deployment']} — blocking condition(s) {c['suspended']} overdue")
        for w in self.watch:
            if w.get("deleted") or w.get("graded") or w.get("error"):
                out.append(f"  live watch: deployment {w['deployment']} — {w.get('graded', 0)} graded, "
                           f"{w.get('deleted', 0)} expired deleted" + (f", SIGNAL: incident #{w['incident']}"
                                                                        if w.get("incident") else "")
                           + (f" ({w['error']})" if w.get("error") else ""))
        if self.dossiers:
            out.append(f"  dossiers emitted: {self.dossiers}")
        if self.emails:
            out.append(f"  e-mails sent: {self.emails}")
        if self.digests:
            out.append(f"  daily digests sent: {self.digests}")
        if self.checkpoint is not None:
            out.append(f"  event log anchored at seq {self.checkpoint}")
        out += [f"  ERROR: {e}" for e in self.errors]
        if len(out) == 1:
            out.append("  nothing due")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"now": self.now.isoformat(), "reminders": self.reminders, "suspended": self.suspended,
                "expired": self.expired, "reaudits": self.reaudits, "reviewed": self.reviewed,
                "resumed_audits": self.resumed_audits, "dossiers": self.dossiers, "emails": self.emails,
                "digests": self.digests, "checkpoint": self.checkpoint, "conditions": self.conditions,
                "watch": self.watch, "errors": self.errors}


def tick(engine: Engine, settings: Settings, now: datetime | None = None) -> TickReport:
    """One pass of everything due at ``now`` (default: the current time)."""
    report = TickReport(now=now or utcnow())
    factory = make_session_factory(engine)
    for step in (_reminders, _suspend_overdue, _conditions, _expire_lapsed, _reaudits, _review_reaudits,
                 _resume_stalled, _live_watch, _dossiers, _anchor):
        with factory() as session:
            try:
                step(session, settings, report)
            except Exception as exc:  # one failing step must not stop the others; the next pass retries
                session.rollback()
                log.exception("scheduler step %s failed", step.__name__)
                report.errors.append(f"{step.__name__.strip('_')}: {exc}")
    try:
        report.emails = send_emails(engine, settings, now=report.now)
        report.digests = send_digests(engine, settings, now=report.now)
    except Exception as exc:  # pragma: no cover - both already log SMTP failures
        report.errors.append(f"emails: {exc}")
    return report


def _conditions(session: Session, settings: Settings, report: TickReport) -> None:
    """The scheduler's step: remind owners before the due date and on it (once each), and suspend a deployment
    whose blocking condition is past due (the suspension's event says which)."""
    now = report.now
    today = now.date()
    done = report.conditions
    open_conditions = select(ApprovalCondition).where(ApprovalCondition.status == ConditionStatus.OPEN)
    before = open_conditions.where(ApprovalCondition.reminded.is_(False), ApprovalCondition.due_date > today,
                                   ApprovalCondition.due_date <= today + CONDITION_REMINDER)
    for condition in list(session.execute(before.order_by(ApprovalCondition.id)).scalars()):
        condition.reminded = True
        _remind_of_condition(session, settings, condition, f"condition-due:{condition.id}", now)
        session.commit()
        done.append({"condition": condition.id, "reminded": True})
    on_the_day = open_conditions.where(ApprovalCondition.due_date <= today)
    for condition in list(session.execute(on_the_day.order_by(ApprovalCondition.id)).scalars()):
        if _remind_of_condition(session, settings, condition, f"condition-due-date:{condition.id}", now):
            condition.reminded = True
            session.commit()
            done.append({"condition": condition.id, "reminded": True, "due_today": True})

    def suspend(deployment: Deployment) -> None:
        """Suspend for the overdue blocking conditions; the suspension's own effect tells the owner and the chair."""
        overdue = queries.overdue_blocking(session, deployment, today)
        if not overdue:
            return
        listed = "; ".join(f"{c.number}. {c.text[:120]} (due {c.due_date.isoformat()})" for c in overdue)
        fire(session, deployment, "suspend", None, {
            "reason": f"blocking condition(s) of the approval not met by their due date: {listed}",
            "cause": SuspensionCause.CONDITION_UNMET.value}, settings=settings, now=now)
        done.append({"deployment": deployment.id, "suspended": [c.id for c in overdue]})

    _each(session, select(Deployment).where(Deployment.status == DeploymentStatus.ACTIVE), report, suspend)


def _remind_of_condition(session: Session, settings: Settings, condition: ApprovalCondition, dedupe_key: str,
                         now: datetime) -> bool:
    """Tell the condition's owner it is due (once per ``dedupe_key``); whether they were told now."""
    deployment = session.get(Deployment, condition.deployment_id)
    step = "blocking_condition_due" if condition.blocking else "condition_due"
    return bool(notify(session, settings, [session.get(User, condition.owner_id)], kind=step_kind(step),
                       subject=step_subject(step, number=condition.number, deployment=deployment.name,
                                            due=condition.due_date.isoformat()),
                       body=condition.text, link=f"/deployments/{deployment.id}#conditions", dedupe_key=dedupe_key,
                       now=now))


def _live_watch(session: Session, settings: Settings, report: TickReport) -> None:
    """For every watch, delete expired samples, then grade new ones with the instance's judge (each commits
    alone; a watch the judge cannot grade reports why and keeps its samples)."""
    judge = None
    for watch in list(session.execute(select(LiveWatch).order_by(LiveWatch.id)).scalars()):
        deleted = expire_samples(session, watch, report.now)
        session.commit()
        judge = judge or configured_judge(settings)
        try:
            result = grade_samples(session, settings, watch, report.now, judge)
            session.commit()
        except GovernanceError as exc:
            session.rollback()
            result = {"graded": 0, "error": str(exc)}
        report.watch.append({"deployment": watch.deployment_id, "deleted": deleted, **result})
    if judge is not None:
        judge.close()


def _each(session: Session, query, report: TickReport, work) -> None:
    """Run ``work`` per row, committing each alone; a refusal for one row is reported, not fatal."""
    for row in session.execute(query).scalars().all():
        try:
            work(row)
            session.commit()
        except GovernanceError as exc:
            session.rollback()
            report.errors.append(f"deployment {getattr(row, 'id', '?')}: {exc}")


# --- continuing review ---------------------------------------------------------------------------

def _reminders(session: Session, settings: Settings, report: TickReport) -> None:
    policy = load_monitoring(settings.regulations_dir).continuing_review
    windows = sorted(policy.reminder_days_before)
    today = report.now.date()
    horizon = today + timedelta(days=max(windows))
    query = select(Deployment).where(Deployment.status == DeploymentStatus.ACTIVE,
                                     Deployment.continuing_review_due.is_not(None),
                                     Deployment.continuing_review_due > today,
                                     Deployment.continuing_review_due <= horizon).order_by(Deployment.id)

    def remind(deployment: Deployment) -> None:
        days_left = (deployment.continuing_review_due - today).days
        window = next(w for w in windows if days_left <= w)  # the nearest window reached: sent once
        case = _open_continuing_review(session, settings, deployment, report.now)
        owner = session.get(User, deployment.owner_id)
        due = deployment.continuing_review_due.isoformat()
        created = notify(
            session, settings, [owner, *people_with_roles(session, Role.IRB_CHAIR)], kind="continuing_review",
            subject=f"Continuing review of {deployment.name} due {due} ({days_left} days)",
            body=(f"The approval of {deployment.name} lapses on {due}: the deployment is suspended automatically "
                  f"unless a continuing review is approved by then. Case #{case.id} is open for it."),
            link=f"/submissions/{case.id}", dedupe_key=f"continuing-review:{deployment.id}:{due}:{window}",
            now=report.now)
        if created:
            report.reminders.append({"deployment": deployment.id, "deployment_name": deployment.name, "due": due,
                                     "days_left": days_left, "window": window, "recipients": len(created),
                                     "case": case.id})

    _each(session, query, report, remind)


def _open_continuing_review(session: Session, settings: Settings, deployment: Deployment,
                            now: datetime) -> Submission:
    case, _new = open_continuing_review(
        session, deployment, actor=None,
        title=f"{deployment.name} — continuing review due {deployment.continuing_review_due.isoformat()}",
        summary="Opened by the scheduler with the first reminder. Describe the use since approval, incidents, "
                "changes and monitoring results, then submit.")
    return case


def _suspend_overdue(session: Session, settings: Settings, report: TickReport) -> None:
    today = report.now.date()
    query = select(Deployment).where(Deployment.status == DeploymentStatus.ACTIVE,
                                     Deployment.continuing_review_due.is_not(None),
                                     Deployment.continuing_review_due <= today).order_by(Deployment.id)

    def suspend(deployment: Deployment) -> None:
        reason = (f"continuing review overdue: approval lapsed on {deployment.continuing_review_due.isoformat()} "
                  "without an approved continuing review")
        fire(session, deployment, "suspend", None, {"reason": reason,
                                                    "cause": SuspensionCause.CONTINUING_REVIEW_OVERDUE.value},
             settings=settings, now=report.now)
        report.suspended.append({"deployment": deployment.id, "deployment_name": deployment.name, "reason": reason})

    _each(session, query, report, suspend)


def _expire_lapsed(session: Session, settings: Settings, report: TickReport) -> None:
    days = load_monitoring(settings.regulations_dir).continuing_review.expire_after_days
    query = select(Deployment).where(Deployment.status == DeploymentStatus.SUSPENDED).order_by(Deployment.id)

    def expire(deployment: Deployment) -> None:
        suspension = queries.latest_suspension(session, deployment)
        if suspension is None or suspension.payload.get("cause") != SuspensionCause.CONTINUING_REVIEW_OVERDUE:
            return
        if report.now - suspension.occurred_at < timedelta(days=days):
            return
        reason = (f"suspended since {suspension.occurred_at.date().isoformat()} for an overdue continuing review "
                  f"and not renewed within {days} days")
        fire(session, deployment, "expire", None, {"reason": reason}, settings=settings, now=report.now)
        report.expired.append({"deployment": deployment.id, "deployment_name": deployment.name, "reason": reason})

    _each(session, query, report, expire)


# --- re-audits -----------------------------------------------------------------------------------

def _reaudits(session: Session, settings: Settings, report: TickReport) -> None:
    query = select(Deployment).where(Deployment.status == DeploymentStatus.ACTIVE,
                                     Deployment.approved_version_id.is_not(None),
                                     Deployment.next_reaudit_at.is_not(None),
                                     Deployment.next_reaudit_at <= report.now).order_by(Deployment.id)
    _each(session, query, report, lambda deployment: report.reaudits.append(
        start_reaudit(session, settings, deployment, now=report.now)))


def _review_reaudits(session: Session, settings: Settings, report: TickReport) -> None:
    for run_id in unreviewed_reaudits(session):
        review = review_reaudit(session, settings, session.get(AuditRun, run_id))
        session.commit()
        report.reviewed.append({"run": run_id, "incident": review.get("incident")})


def _resume_stalled(session: Session, settings: Settings, report: TickReport) -> None:
    """Audits whose runner died (lease lapsed, or queued and never picked up) and errored audits whose back-off is
    over are started again; a run resumes from its stored results."""
    busy = set(jobs.running("audit.run"))
    due = stale_runs(session, STALE_AUDIT_AFTER, report.now)
    due += [run.id for run in errored_runs(session) if retry_due(run, report.now)]
    for run_id in sorted(set(due)):
        if run_id not in busy:
            jobs.dispatch(session.get_bind(), settings, "audit.run", {"run_id": run_id}, key=run_id)
            report.resumed_audits.append(run_id)


def _anchor(session: Session, settings: Settings, report: TickReport) -> None:
    """A signed checkpoint of the log's head, when it moved since the last one (an instance without a signing key
    has nothing to sign with: ``govern keys init`` makes one)."""
    if not key_paths(settings).pkcs12.exists():
        return
    written = anchor.checkpoint(session, settings, reason="schedule")
    if written is not None:
        report.checkpoint = written["seq"]


def _dossiers(session: Session, settings: Settings, report: TickReport) -> None:
    try:
        report.dossiers = len(emit_pending(session, settings))
    except SigningKeyError as exc:
        session.rollback()
        report.errors.append(f"dossiers: {len(pending(session))} gate events wait for their signed dossier: {exc}")


# --- running ---------------------------------------------------------------------------------------

def run_forever(engine: Engine, settings: Settings, interval: float, stop: threading.Event | None = None,
                on_report=None) -> None:
    """Tick every ``interval`` seconds until ``stop`` is set (the long-running ``govern scheduler run``)."""
    stop = stop or threading.Event()
    while not stop.is_set():
        report = tick(engine, settings)
        if on_report is not None:
            on_report(report)
        stop.wait(interval)
