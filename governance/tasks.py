"""Celery tasks: audits on separate GPU worker hosts, and the monitoring scheduler on beat.

Start a worker with ``celery -A governance.tasks worker -Q audits`` and the schedule with
``celery -A governance.tasks beat``; both read the same settings as the web app (``GOVERNANCE_*``
variables or the instance ``config.toml``), so all share the database and the broker named by
``GOVERNANCE_BROKER_URL``. Beat sends ``governance.scheduler_tick`` every ``scheduler_interval`` seconds.
"""

from __future__ import annotations

import dataclasses

from celery import Celery

from .config import Settings, load_settings, resolve_instance_path

QUEUE = "audits"
celery = Celery("governance", set_as_current=False)


@celery.on_configure.connect
def _configure(sender: Celery, **_kwargs) -> None:
    settings = load_settings(resolve_instance_path())
    sender.conf.update(broker_url=settings.broker_url or "redis://127.0.0.1:6379/0",
                       task_default_queue=QUEUE, task_acks_late=True, worker_prefetch_multiplier=1,
                       broker_connection_retry_on_startup=True, task_ignore_result=True,
                       beat_schedule=beat_schedule(settings))


def _worker_settings() -> Settings:
    """The shared settings, with follow-up work (dossiers) done inside the task: a task disposes of its engine
    when it returns, so it must not leave threads behind that still use it."""
    return dataclasses.replace(load_settings(resolve_instance_path()), dossier_dispatch="inline")


def beat_schedule(settings: Settings) -> dict:
    """One scheduler pass every ``scheduler_interval`` seconds (it expires rather than piling up)."""
    return {"monitoring-tick": {"task": "governance.scheduler_tick", "schedule": float(settings.scheduler_interval),
                                "options": {"queue": QUEUE, "expires": float(settings.scheduler_interval)}}}


@celery.task(name="governance.run_audit", acks_late=True)
def run_audit(run_id: int) -> str:
    from .audit.gate import run_gate_audit
    from .db import make_engine

    settings = _worker_settings()
    engine = make_engine(settings.sqlalchemy_url)
    try:
        run = run_gate_audit(engine, settings, run_id)
        return run.status
    finally:
        engine.dispose()


@celery.task(name="governance.scheduler_tick")
def scheduler_tick() -> dict:
    from .db import make_engine
    from .monitoring.scheduler import tick

    settings = _worker_settings()
    engine = make_engine(settings.sqlalchemy_url)
    try:
        return tick(engine, settings).as_dict()
    finally:
        engine.dispose()


def enqueue_audit(settings: Settings, run_id: int) -> None:
    celery.conf.broker_url = settings.broker_url
    run_audit.apply_async(args=[run_id], queue=QUEUE)
