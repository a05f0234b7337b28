"""The job port: work that runs after a commit, in this process or on another host.

Operations, re-audits and the scheduler *enqueue* named jobs (``audit.run``, ``dossier.emit``,
``mail.send``); nothing is sent if the transaction rolls back. A runner chosen by the settings carries a
job out:

- ``inline``: in the caller, right after the commit (the CLI, tests);
- ``thread``: an in-process worker thread (one machine, no services);
- ``celery``: a task on the broker, consumed by ``celery -A governance.tasks worker`` (GPU hosts);
- ``queue``: left as it is, for the scheduler or ``govern audit resume`` to pick up;
- ``auto`` (the default): ``celery`` when a broker is configured, else ``thread``.

The handlers are installed by :func:`governance.system.assemble`, which every process calls; this module
imports none of them, so the layers that enqueue never import the layers that do the work.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine

from .db import after_commit
from .errors import GovernanceError

if TYPE_CHECKING:
    from .config import Settings

log = logging.getLogger(__name__)

#: handler(engine, settings, **arguments)
Handler = Callable[..., Any]
#: The setting that picks each job's runner.
RUNNER_SETTING = {"audit.run": "audit_dispatch", "dossier.emit": "dossier_dispatch", "mail.send": "mail_dispatch"}
#: Celery queues: audits go to GPU workers, everything else to the default queue.
QUEUES = {"audit.run": "audits"}
DEFAULT_QUEUE = "governance"
#: The Celery task every job travels in (:mod:`governance.tasks`) ...
CELERY_TASK = "governance.run_job"
#: ... but e-mail, which has its own task with a retry policy for an SMTP server that is down or refuses.
CELERY_TASKS = {"mail.send": "governance.send_mail"}

_handlers: dict[str, Handler] = {}
_threads: dict[tuple[str, Any], threading.Thread] = {}
_lock = threading.Lock()
_clients: dict[str, Any] = {}


class JobError(GovernanceError):
    """A job that cannot be run here (unknown, or this process did not assemble the system)."""


class RetryLater(Exception):
    """The job's subject is held by another runner (e.g. an audit whose lease has not lapsed): try again in
    ``seconds``; if that runner died, its lease will have lapsed by then and this runner takes over."""

    def __init__(self, seconds: float, why: str):
        super().__init__(why)
        self.seconds = max(1.0, seconds)


def install(handlers: Mapping[str, Handler]) -> None:
    _handlers.update(handlers)


def installed() -> set[str]:
    return set(_handlers)


def runner_for(name: str, settings: Settings) -> str:
    mode = getattr(settings, RUNNER_SETTING.get(name, "job_dispatch"), "auto")
    if mode == "auto":
        return "celery" if settings.broker_url else "thread"
    return mode


def enqueue(session, settings: Settings, name: str, *, key: Any = None, **arguments: Any) -> None:
    """Start job ``name`` once ``session``'s transaction commits (dropped on rollback). ``key`` names the
    job's subject: an in-process runner never runs two jobs of one name and key at once."""
    engine = session.get_bind()
    after_commit(session, lambda: dispatch(engine, settings, name, arguments, key=key))


def dispatch(engine: Engine, settings: Settings, name: str, arguments: dict[str, Any], *, key: Any = None) -> str:
    """Start job ``name`` now; returns the runner that took it."""
    mode = runner_for(name, settings)
    if mode == "queue":
        return mode
    if mode == "celery":
        _celery_client(settings.broker_url).send_task(CELERY_TASKS.get(name, CELERY_TASK), args=[name, arguments],
                                                      queue=QUEUES.get(name, DEFAULT_QUEUE))
        return mode
    if mode == "inline":
        try:
            run(engine, settings, name, arguments)
        except RetryLater as later:  # the caller does not wait: the scheduler resumes it if its runner died
            log.info("job %s %s: %s", name, arguments, later)
        return mode
    _start_thread(engine, settings, name, arguments, key)
    return "thread"


def run(engine: Engine, settings: Settings, name: str, arguments: dict[str, Any]) -> Any:
    """Carry out job ``name`` in this process (the runners, and the Celery task, end here)."""
    handler = _handlers.get(name)
    if handler is None:
        raise JobError(f"no handler for job '{name}' in this process: it did not assemble the system "
                       f"(governance.system.assemble); installed: {', '.join(sorted(_handlers)) or 'none'}")
    return handler(engine, settings, **arguments)


def _start_thread(engine: Engine, settings: Settings, name: str, arguments: dict[str, Any], key: Any) -> None:
    slot = (name, key if key is not None else object())

    def work() -> None:
        later = None
        try:
            run(engine, settings, name, arguments)
        except RetryLater as exc:
            later = exc
        except Exception:  # the job's subject stays resumable; the operator reads the log
            log.exception("job %s %s stopped", name, arguments)
        finally:
            with _lock:
                _threads.pop(slot, None)
        if later is not None:
            log.info("job %s %s: %s; trying again in %.0f s", name, arguments, later, later.seconds)
            timer = threading.Timer(later.seconds, _start_thread, (engine, settings, name, arguments, key))
            timer.daemon = True
            timer.start()

    with _lock:
        if slot in _threads:
            return
        thread = threading.Thread(target=work, name=f"job-{name}-{key}", daemon=True)
        _threads[slot] = thread
    thread.start()


def running(name: str | None = None) -> list[Any]:
    """Keys of the jobs running in this process's threads (of ``name``, or all)."""
    with _lock:
        return sorted((key for (job, key) in _threads if name in (None, job)), key=str)


def wait(timeout: float = 60.0) -> bool:
    """Wait for this process's job threads (tests, and commands before they exit)."""
    deadline = time.monotonic() + timeout
    while True:
        with _lock:
            threads = list(_threads.values())
        if not threads:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        threads[0].join(remaining)


def _celery_client(broker_url: str):
    """A Celery app that only sends (one per broker URL); the worker's app is :mod:`governance.tasks`."""
    client = _clients.get(broker_url)
    if client is None:
        from celery import Celery  # only processes that send to a broker pay for importing Celery

        client = Celery("governance-client", broker=broker_url, set_as_current=False)
        client.conf.update(broker_connection_retry_on_startup=True, task_ignore_result=True)
        _clients[broker_url] = client
    return client
