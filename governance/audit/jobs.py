"""Where audit jobs run: an in-process worker thread (default), inline (CLI, tests), or Celery."""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy.engine import Engine

from ..config import Settings

log = logging.getLogger(__name__)
_threads: dict[int, threading.Thread] = {}
_lock = threading.Lock()


def dispatch(engine: Engine, settings: Settings, run_id: int) -> str:
    """Start audit ``run_id``; returns how ("celery", "inline", "thread" or "queue")."""
    if settings.broker_url:
        from ..tasks import enqueue_audit

        enqueue_audit(settings, run_id)
        return "celery"
    from .gate import run_gate_audit

    if settings.audit_dispatch == "queue":
        return "queue"
    if settings.audit_dispatch == "inline":
        run_gate_audit(engine, settings, run_id)
        return "inline"

    def work() -> None:
        try:
            run_gate_audit(engine, settings, run_id)
        except Exception:  # a crashed worker leaves the run resumable; log it for the operator
            log.exception("audit run %s stopped", run_id)
        finally:
            with _lock:
                _threads.pop(run_id, None)

    with _lock:
        if run_id in _threads:
            return "thread"
        thread = threading.Thread(target=work, name=f"audit-{run_id}", daemon=True)
        _threads[run_id] = thread
    thread.start()
    return "thread"


def running() -> list[int]:
    with _lock:
        return sorted(_threads)


def wait(timeout: float = 60.0) -> bool:
    """Wait for in-process audit threads to finish (tests, ``govern`` commands before exit)."""
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


def dispatch_dossiers(engine: Engine, settings: Settings, submission_id: int) -> str:
    """Emit the dossiers a case's committed gate events still lack (thread, inline, or left queued for
    ``govern dossier pending`` and the scheduler)."""
    if settings.dossier_dispatch == "queue":
        return "queue"

    def work() -> None:
        from ..db import make_session_factory
        from ..models import Submission
        from ..operations.dossiers import emit, pending

        with make_session_factory(engine)() as session:
            for case_id, seq, gate in pending(session):
                if case_id == submission_id:
                    emit(session, settings, session.get(Submission, case_id), gate, event_seq=seq)
                    session.commit()

    if settings.dossier_dispatch == "inline":
        work()
        return "inline"

    def guarded() -> None:
        try:
            work()
        except Exception:  # the gate event stays undocumented and is picked up by the next pending run
            log.exception("dossier for submission %s not emitted", submission_id)
        finally:
            with _lock:
                _threads.pop(-submission_id, None)

    thread = threading.Thread(target=guarded, name=f"dossier-{submission_id}", daemon=True)
    with _lock:
        _threads[-submission_id] = thread
    thread.start()
    return "thread"
