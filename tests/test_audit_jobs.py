"""Gate audits as jobs: started by the workflow, run in a thread or on Celery (Redis), resumed after a crash
with no lost or duplicated item, cancellable; their verdict advances the case."""

from __future__ import annotations

import dataclasses
import os
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from governance import eventlog, queries
from governance.audit import gate, jobs
from governance.audit.backends import DemoBackend
from governance.db import get_db
from governance.models import AuditItemResult, AuditRun, Submission

from .conftest import REDIS_URL, REQUIRE_SERVICES

pytestmark = pytest.mark.both_databases


def _queued_case(factory):
    case = factory.submission()
    factory.drive(case, "auditing")
    run = queries.latest_audit(factory.session, case)
    assert run.status == "queued" and run.frozen_at is not None and run.items_done == 0
    return case, run


def test_the_gate_runs_in_a_worker_thread(factory, app):
    case, run = _queued_case(factory)
    settings = dataclasses.replace(app.config["GOVERNANCE"], audit_dispatch="thread")
    assert jobs.dispatch(get_db(app).engine, settings, run.id) == "thread"
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


def test_a_crashed_audit_resumes_without_lost_or_duplicated_items(factory, app, monkeypatch):
    case, run = _queued_case(factory)
    engine, settings = get_db(app).engine, app.config["GOVERNANCE"]
    original = gate.make_backend
    monkeypatch.setattr(gate, "make_backend", lambda kind, model, items, **kw: CrashingBackend(model, items, 230))
    with pytest.raises(RuntimeError, match="worker killed"):
        gate.run_gate_audit(engine, settings, run.id)
    factory.session.expire_all()
    stalled = factory.session.get(AuditRun, run.id)
    assert stalled.status == "running" and 200 <= stalled.items_done < stalled.items_total
    assert gate.stale_runs(factory.session, timedelta(0)) == [run.id]
    monkeypatch.setattr(gate, "make_backend", original)
    finished = gate.run_gate_audit(engine, settings, run.id)
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


def test_a_failed_backend_holds_the_case_with_the_reason(factory, app):
    case = factory.submission(endpoint="/nonexistent/model/folder")
    factory.drive(case, "classified")
    factory.fire(case, "confirm_classification", factory.person("chair"))  # the audit runs (inline) and fails
    run = queries.latest_audit(factory.session, case)
    factory.session.expire_all()
    run = factory.session.get(AuditRun, run.id)
    assert run.status == "failed" and "not a folder" in run.error
    assert factory.session.get(Submission, case.id).state == "held"


def test_a_change_depending_on_the_audit_stays_on_the_fast_track_when_non_inferior(factory):
    approved = factory.case_in("approved")
    from governance.models import Deployment

    deployment = factory.session.get(Deployment, approved.deployment_id)
    version = factory.version(deployment, label="v2-retrained")  # same data categories: depends on the audit
    change = factory.submission(kind="change", deployment=deployment, version=version)
    factory.drive(change, "in_review")
    assert change.materiality == "minor" and change.pathway == "ai_subcommittee"
    run = queries.latest_audit(factory.session, change)
    assert run.baseline_run_id is not None and run.summary["regression"]["non_inferior"]
    [event] = [e for e in eventlog.events_for_submission(factory.session, change.id) if e.name == "audit_passed"]
    assert event.payload["materiality"] == "minor" and "non-inferior" in event.payload["materiality_basis"]


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
    assert not run.summary["regression"]["non_inferior"]
    assert change.state == "held" and any("non_inferiority" in r for r in run.verdict_reasons)
    assert change.materiality == "material" and change.pathway == "full_board"


@pytest.mark.redis
def test_the_gate_runs_on_a_celery_worker_over_redis(factory, app, monkeypatch, tmp_path):
    if not REDIS_URL:
        if REQUIRE_SERVICES:
            pytest.fail("GOVERNANCE_TEST_REDIS_URL is required")
        pytest.skip("GOVERNANCE_TEST_REDIS_URL is not set")
    from celery.contrib.testing.worker import start_worker

    from governance import tasks

    settings = app.config["GOVERNANCE"]
    for key, value in {"INSTANCE": str(settings.instance_path), "DATABASE_URL": settings.database_url,
                       "SECRET_KEY": settings.secret_key, "DEMO_MODE": "true", "BROKER_URL": REDIS_URL}.items():
        monkeypatch.setenv(f"GOVERNANCE_{key}", value)
    case, run = _queued_case(factory)
    celery_settings = dataclasses.replace(settings, broker_url=REDIS_URL)
    tasks.celery.conf.update(broker_url=REDIS_URL, task_default_queue=tasks.QUEUE, task_ignore_result=True)
    with start_worker(tasks.celery, pool="solo", perform_ping_check=False, queues=[tasks.QUEUE], loglevel="WARNING",
                      shutdown_timeout=30):
        assert jobs.dispatch(get_db(app).engine, celery_settings, run.id) == "celery"
        import time

        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            factory.session.expire_all()
            if factory.session.get(AuditRun, run.id).status == "completed":
                break
            time.sleep(0.2)
    factory.session.expire_all()
    assert factory.session.get(AuditRun, run.id).verdict == "pass"
    assert factory.session.get(Submission, case.id).state == "in_review"
    assert os.environ["GOVERNANCE_BROKER_URL"] == REDIS_URL
