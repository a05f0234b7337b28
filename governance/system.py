"""The system every process assembles: the jobs it can carry out.

The web app (:func:`governance.app.create_app`), the CLI, the Celery worker and beat
(:mod:`governance.tasks`) and the tests all call :func:`assemble`, so a job enqueued anywhere runs the same
code wherever it lands. The guard and effect registries need no assembling: the engine imports them.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Engine

from . import jobs
from .config import Settings
from .db import make_session_factory
from .domain import AuditStatus
from .gate import run_gate_audit
from .models import AuditRun
from .notify import send_emails
from .operations.dossiers import emit_owed
from .scheduler import tick
from .scheduler.reaudit import review_reaudit


def run_audit(engine: Engine, settings: Settings, run_id: int) -> str:
    """``audit.run``: carry the run to its verdict; a finished re-audit is then judged against its baseline."""
    run = run_gate_audit(engine, settings, run_id)
    if run.purpose == "reaudit":
        with make_session_factory(engine)() as session:
            review_reaudit(session, settings, session.get(AuditRun, run.id))
            session.commit()
    return run.status


def emit_dossiers(engine: Engine, settings: Settings, submission_id: int) -> int:
    """``dossier.emit``: the signed dossiers a case's gate events still lack."""
    return emit_owed(engine, settings, submission_id)


def send_mail(engine: Engine, settings: Settings, ids: list[int] | None = None, strict: bool = False) -> int:
    """``mail.send``: e-mail the notifications ``ids``; ``strict`` (the Celery task) raises an SMTP failure so the
    task is retried, otherwise it is logged (the scheduler retries what could not be sent)."""
    return send_emails(engine, settings, ids, strict=strict)


def scheduler_pass(engine: Engine, settings: Settings) -> dict:
    """``scheduler.tick``: one monitoring pass (Celery beat sends it every ``scheduler_interval`` seconds)."""
    return tick(engine, settings).as_dict()


def adopt_running(engine: Engine, settings: Settings) -> list[int]:
    """``audit.adopt`` (sent when a worker starts): every running audit is dispatched again. One whose runner is
    alive keeps it (the new job waits for the lease and ends when the run does); one whose runner died with the
    old worker is taken over as soon as its lease lapses, without waiting for the broker or the next tick."""
    with make_session_factory(engine)() as session:
        running = list(session.execute(select(AuditRun.id).where(AuditRun.status == AuditStatus.RUNNING)).scalars())
    for run_id in running:
        jobs.dispatch(engine, settings, "audit.run", {"run_id": run_id}, key=run_id)
    return running


HANDLERS = {"audit.run": run_audit, "audit.adopt": adopt_running, "dossier.emit": emit_dossiers,
            "mail.send": send_mail, "scheduler.tick": scheduler_pass}


def assemble() -> None:
    """Install the job handlers (idempotent)."""
    jobs.install(HANDLERS)
