"""The Celery worker and beat: every job travels in one task, ``governance.run_job``.

Start a worker on GPU hosts with ``celery -A governance.tasks worker -Q audits,governance`` and the
schedule with ``celery -A governance.tasks beat``. Both read the same settings as the web app
(``GOVERNANCE_*`` variables or the instance ``config.toml``) and assemble the same system, so a job
enqueued by the web app runs the same code here. Beat sends ``scheduler.tick`` every
``scheduler_interval`` seconds.

Delivery: a task is acknowledged only when it has finished (``acks_late``) and is given back to the
broker when its worker process dies (``reject_on_worker_lost``), so a killed worker's audit is delivered
again; the audit resumes from its stored results, and a job runs at most once per key at a time here.
"""

from __future__ import annotations

import logging
import os
import smtplib
import threading
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_shutdown, worker_ready

from . import jobs, system
from .config import Settings, load_settings, resolve_instance_path
from .db import make_engine

log = logging.getLogger(__name__)
celery = Celery("governance", set_as_current=False)
system.assemble()


class _Runtime:
    """Settings and one database engine per worker process (a forked child makes its own)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self.settings: Settings | None = None
        self.engine = None

    def get(self):
        with self._lock:
            if self._pid != os.getpid():
                self.settings = load_settings(resolve_instance_path())
                self.engine = make_engine(self.settings.sqlalchemy_url)
                self._pid = os.getpid()
            return self.engine, self.settings

    def close(self) -> None:
        with self._lock:
            if self.engine is not None and self._pid == os.getpid():
                self.engine.dispose()
            self._pid = None


runtime = _Runtime()


@celery.on_configure.connect
def _configure(sender: Celery, **_kwargs) -> None:
    settings = load_settings(resolve_instance_path())
    sender.conf.update(
        broker_url=settings.broker_url or "redis://127.0.0.1:6379/0",
        task_default_queue=jobs.DEFAULT_QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": settings.job_visibility_timeout},
        task_ignore_result=True,
        beat_schedule=beat_schedule(settings))


@worker_init.connect
def _warm_up(**_kwargs) -> None:
    """The dossier renderer and signer loaded once, before the pool forks: the first dossier of every worker process
    then costs what the later ones do."""
    from .dossier.render import warm_up

    settings = load_settings(resolve_instance_path())
    log.info("dossier renderer ready in %.2f s", warm_up(settings.reports_dir))


@worker_process_shutdown.connect
def _dispose(**_kwargs) -> None:
    runtime.close()


@worker_ready.connect
def _resume_on_start(**_kwargs) -> None:
    """A worker that starts (after a crash, a deploy) adopts the running audits: one whose runner died with the old
    worker resumes as soon as its lease lapses, without waiting for the broker's redelivery or beat's next tick."""
    run_job.apply_async(args=["audit.adopt", {}], queue=jobs.DEFAULT_QUEUE)


def beat_schedule(settings: Settings) -> dict:
    """One scheduler pass every ``scheduler_interval`` seconds (it expires rather than piling up)."""
    return {"monitoring-tick": {"task": jobs.CELERY_TASK, "schedule": float(settings.scheduler_interval),
                                "args": ["scheduler.tick", {}],
                                "options": {"queue": jobs.DEFAULT_QUEUE, "expires": float(settings.scheduler_interval)}}}


@celery.task(name=jobs.CELERY_TASK, bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def run_job(self, name: str, arguments: dict[str, Any]) -> Any:
    """Carry out one job of the port in this worker (its follow-up jobs go back through the broker). A job
    whose subject another runner holds is sent again later: a redelivered audit whose first runner was killed
    waits for that runner's lease to lapse, then takes over."""
    engine, settings = runtime.get()
    try:
        return jobs.run(engine, settings, name, arguments)
    except jobs.RetryLater as later:
        raise self.retry(countdown=later.seconds, exc=later) from None


#: What the e-mail task retries: the SMTP server refused, dropped the connection, or could not be reached.
MAIL_RETRY_FOR = (smtplib.SMTPException, OSError)


@celery.task(name=jobs.CELERY_TASKS["mail.send"], bind=True, acks_late=True, reject_on_worker_lost=True,
             autoretry_for=MAIL_RETRY_FOR, retry_backoff=30, retry_backoff_max=3600, retry_jitter=True,
             max_retries=8)
def send_mail(self, name: str, arguments: dict[str, Any]) -> Any:
    """``mail.send`` on a worker: an SMTP failure raises (the messages sent before it are recorded), so Celery
    tries again up to eight times, waiting about 30 s, 60 s, 120 s … (jittered, at most an hour); what is still
    unsent after that is left to the scheduler's tick, which retries unsent e-mail for a week."""
    engine, settings = runtime.get()
    return jobs.run(engine, settings, name, {**arguments, "strict": True})
