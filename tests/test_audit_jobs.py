"""Gate audits as jobs: started by the workflow, run in a thread or on Celery (Redis), resumed after a crash
with no lost or duplicated item, cancellable; their verdict advances the case."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from governance import eventlog, gate, jobs, queries
from governance.audit.backends import DemoBackend
from governance.audit.store import stale_runs
from governance.db import get_db
from governance.models import AuditItemResult, AuditRun, Submission

from .conftest import REAL_AUDIT, REDIS_URL, REQUIRE_SERVICES

pytestmark = pytest.mark.both_databases


def _queued_case(factory):
    case = factory.submission()
    factory.drive(case, "auditing")
    run = queries.latest_audit(factory.session, case)
    assert run.status == "queued" and run.frozen_at is not None and run.items_done == 0
    return case, run


def test_the_gate_runs_in_a_worker_thread(factory, app):
    case, run = _queued_case(factory)
    settings = app.config["GOVERNANCE"].replace(audit_dispatch="thread")
    assert jobs.dispatch(get_db(app).engine, settings, "audit.run", {"run_id": run.id}, key=run.id) == "thread"
    assert jobs.wait(60)
    factory.session.expire_all()
    case = factory.session.get(Submission, case.id)
    assert case.state == "in_review"
    run = factory.session.get(AuditRun, run.id)
    assert run.status == "completed" and run.items_done == run.items_total and run.verdict == "pass"
    assert run.run_metadata["backend"] == "demo" and run.run_metadata["item_set_digest"] == run.item_set_digest
    assert run.run_metadata["self_test"] == "passed"


def test_a_session_holding_the_queued_run_sees_the_verdict_written_elsewhere(factory, app):
    case, run = _queued_case(factory)  # this session keeps the queued copy alive in its identity map
    gate.run_gate_audit(get_db(app).engine, app.config["GOVERNANCE"], run.id)
    assert run.status == "queued"
    assert queries.latest_audit(factory.session, case) is run and run.status == "completed"
    assert queries.audit_passed(factory.session, case)


class CrashingBackend(DemoBackend):
    """Stops the process (an uncaught error) after ``after`` answers, as a killed worker would."""

    def __init__(self, model, items, after):
        super().__init__(model, items)
        self.after = after

    def stream(self, prompts):
        for index, response in super().stream(prompts):
            if index >= self.after:
                raise RuntimeError("worker killed")
            yield index, response


@pytest.fixture
def app_overrides(request):
    return {"audit_batch": 20}


def test_a_crashed_audit_resumes_without_lost_or_duplicated_items(factory, app, monkeypatch):
    case, run = _queued_case(factory)
    engine, settings = get_db(app).engine, app.config["GOVERNANCE"]
    original = gate.make_backend
    monkeypatch.setattr(gate, "make_backend", lambda kind, model, items, **kw: CrashingBackend(model, items, 70))
    with pytest.raises(RuntimeError, match="worker killed"):
        gate.run_gate_audit(engine, settings, run.id, owner="killed-runner")
    factory.session.expire_all()
    stalled = factory.session.get(AuditRun, run.id)
    assert stalled.status == "running" and 60 <= stalled.items_done < stalled.items_total
    # while the dead runner's lease is live, nobody else starts it (one runner per run)...
    assert stale_runs(factory.session, timedelta(0)) == []
    with pytest.raises(jobs.RetryLater) as later:
        gate.run_gate_audit(engine, settings, run.id, owner="second-runner")
    assert 0 < later.value.seconds <= settings.audit_lease_seconds + 1  # it tries again once the lease lapses
    # ...once it lapses, the run is stale and the next runner takes it over from its stored results
    factory.session.execute(update(AuditRun).where(AuditRun.id == run.id)
                            .values(lease_expires_at=stalled.lease_expires_at - timedelta(minutes=5)))
    factory.session.commit()
    assert stale_runs(factory.session, timedelta(0)) == [run.id]
    monkeypatch.setattr(gate, "make_backend", original)
    finished = gate.run_gate_audit(engine, settings, run.id, owner="second-runner")
    factory.session.expire_all()
    count = factory.session.execute(select(func.count(AuditItemResult.id)).where(AuditItemResult.run_id == run.id)).scalar_one()
    distinct = factory.session.execute(select(func.count(func.distinct(AuditItemResult.item_id)))
                                       .where(AuditItemResult.run_id == run.id)).scalar_one()
    assert finished.status == "completed" and count == distinct == finished.items_total
    assert factory.session.get(Submission, case.id).state == "in_review"


def test_cancelling_a_running_audit_holds_the_case(factory, app, runner):
    case, run = _queued_case(factory)
    result = runner.invoke("audit", "cancel", str(run.id))
    assert result.exit_code == 0, result.output
    finished = gate.run_gate_audit(get_db(app).engine, app.config["GOVERNANCE"], run.id)
    assert finished.status == "cancelled"
    factory.session.expire_all()
    # a cancelled audit is not a pass: the case waits for a re-run decided by the chair
    assert factory.session.get(Submission, case.id).state == "auditing"


def test_model_files_that_cannot_be_read_are_an_error_of_the_audit_not_a_verdict_on_the_model(factory, app):
    case = factory.submission(endpoint="/nonexistent/model/folder")
    factory.drive(case, "classified")
    factory.fire(case, "confirm_classification", factory.person("chair"))  # the audit runs (inline) and cannot
    run = queries.latest_audit(factory.session, case)
    factory.session.expire_all()
    run = factory.session.get(AuditRun, run.id)
    assert run.status == "error" and run.verdict is None and run.error.startswith("model_files:")
    assert "/nonexistent" not in run.error  # plain words for people; the path and the exception go to the log
    assert factory.session.get(Submission, case.id).state == "auditing"  # not held: nothing was learnt


def test_a_change_depending_on_the_audit_stays_on_the_fast_track_without_a_significant_decline(factory):
    approved = factory.case_in("approved")
    from governance.models import Deployment

    deployment = factory.session.get(Deployment, approved.deployment_id)
    version = factory.version(deployment, label="v2-retrained")  # same data categories: depends on the audit
    change = factory.submission(kind="change", deployment=deployment, version=version)
    factory.drive(change, "in_review")
    assert change.materiality == "minor" and change.pathway == "ai_subcommittee"
    run = queries.latest_audit(factory.session, change)
    assert run.baseline_run_id is not None and run.summary["regression"]["no_significant_decline"]
    # the same deployment asks the same prompts: the same demo model answers every item as before
    assert run.seed == queries.latest_audit(factory.session, approved).seed
    assert run.summary["regression"]["overall"]["worse"] == run.summary["regression"]["overall"]["better"] == 0
    [event] = [e for e in eventlog.events_for_submission(factory.session, change.id) if e.name == "audit_passed"]
    assert event.payload["materiality"] == "minor" and "no significant decline" in event.payload["materiality_basis"]


@pytest.mark.parametrize("app_overrides", [REAL_AUDIT])
def test_a_regressed_change_goes_to_the_full_board(factory):
    approved = factory.case_in("approved")
    from governance.models import Deployment

    deployment = factory.session.get(Deployment, approved.deployment_id)
    version = factory.version(deployment, label="v2-regressed", endpoint="demo://regressed")
    change = factory.submission(kind="change", deployment=deployment, version=version)
    factory.drive(change, "classified")
    factory.fire(change, "confirm_classification", factory.person("chair"))
    factory.session.expire_all()
    change = factory.session.get(Submission, change.id)
    run = queries.latest_audit(factory.session, change)
    assert not run.summary["regression"]["no_significant_decline"]
    assert change.state == "held" and any(r.startswith("decline:") for r in run.verdict_reasons)
    assert change.materiality == "material" and change.pathway == "full_board"


def _worker_environment(settings, **extra: str) -> dict[str, str]:
    """The environment of a separate worker process: the same instance, database and broker as the test app."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GOVERNANCE_")}
    environment.update({"GOVERNANCE_INSTANCE": str(settings.instance_path), "GOVERNANCE_DATABASE_URL": settings.database_url,
                        "GOVERNANCE_SECRET_KEY": settings.secret_key.get_secret_value(), "GOVERNANCE_DEMO_MODE": "true",
                        **{f"GOVERNANCE_{k.upper()}": v for k, v in extra.items()}})
    return environment


def _require_redis() -> None:
    if not REDIS_URL:
        if REQUIRE_SERVICES:
            pytest.fail("GOVERNANCE_TEST_REDIS_URL is required")
        pytest.skip("GOVERNANCE_TEST_REDIS_URL is not set")


def _wait_for(factory, predicate, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        factory.session.expire_all()
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError("timed out")


@pytest.mark.redis
def test_a_worker_process_that_never_builds_the_app_runs_the_gate_to_its_verdict(factory, app):
    """`celery -A governance.tasks worker` imports governance.tasks only: the workflow's guards and effects and
    the job handlers must be there anyway (a worker used to finish the audit, then fail on the first guard)."""
    _require_redis()
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    settings = app.config["GOVERNANCE"]
    case, run = _queued_case(factory)
    environment = _worker_environment(settings, broker_url=REDIS_URL, dossier_dispatch="queue")
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "governance.tasks", "worker", "--pool", "solo",
                               "-Q", "audits,governance", "--without-heartbeat", "--without-gossip",
                               "--without-mingle", "--loglevel", "WARNING"], env=environment,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert jobs.dispatch(get_db(app).engine, settings.replace(broker_url=REDIS_URL, audit_dispatch="auto"), "audit.run",
                             {"run_id": run.id}, key=run.id) == "celery"
        _wait_for(factory, lambda: factory.session.get(Submission, case.id).state != "auditing")
    finally:
        worker.terminate()
        output = worker.communicate(timeout=30)[0]
    assert factory.session.get(AuditRun, run.id).verdict == "pass", output
    assert factory.session.get(Submission, case.id).state == "in_review", output
    assert "KeyError" not in output and "Traceback" not in output, output


def test_the_beat_pass_in_a_process_that_never_builds_the_app_suspends_an_overdue_deployment(factory, app):
    """Celery beat sends ``scheduler.tick``; the task body alone must be able to fire the suspension."""
    approved = factory.case_in("approved")
    from governance.models import Deployment

    deployment = factory.session.get(Deployment, approved.deployment_id)
    due = deployment.continuing_review_due
    script = ("import json, governance.tasks as t; from datetime import datetime, UTC; "
              "from governance import scheduler; engine, settings = t.runtime.get(); "
              f"print(json.dumps(scheduler.tick(engine, settings, now=datetime({due.year + 1}, 1, 2, tzinfo=UTC))"
              ".as_dict(), default=str))")
    done = subprocess.run([sys.executable, "-c", script], env=_worker_environment(app.config["GOVERNANCE"]),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # (the test instance has no signing key, so the pass reports the dossiers it could not sign: not this test's point)
    assert [e for e in report["errors"] if not e.startswith("dossiers:")] == []
    assert [s["deployment"] for s in report["suspended"]] == [deployment.id]
    factory.session.expire_all()
    assert factory.session.get(Deployment, deployment.id).status == "suspended"


def test_importing_any_entry_point_completes_the_registries():
    """Web, worker, beat and CLI all fire events; none may depend on building the app to register guards."""
    for module in ("governance.tasks", "governance.scheduler", "governance.gate", "governance.operations"):
        done = subprocess.run([sys.executable, "-c", f"import {module}; from governance.operations.engine import "
                               "registry_problems; from governance import jobs; print(registry_problems(), "
                               "sorted(jobs.installed()))"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        problems, _, installed = done.stdout.strip().partition("] ")
        assert problems == "[", (module, done.stdout)
        if module == "governance.tasks":
            assert installed == "['audit.adopt', 'audit.run', 'dossier.emit', 'mail.send', 'scheduler.tick']"
