"""The verdict: rules whose error rates are known, a freeze the database enforces, runs that cannot be shopped,
deterministic statistics, and infrastructure failures that are never a verdict on the model.

The scenarios use a scripted model served over HTTP (``tests.support.oracle``) whose answer to every item is
known, so the true accuracy of each dimension, and the size of each drop, are exact.
"""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from sqlmodel import select

from governance import eventlog, queries
from governance.audit.items import DIMENSIONS, load_items
from governance.audit.policy import EXACT_TYPES, load_policy
from governance.audit.policy import plan as policy_plan
from governance.audit.verdict import evaluate
from governance.db import get_db
from governance.models import AuditItemResult, AuditRun, Deployment, Notification, Submission
from governance.operations.dossiers import pending

from .conftest import REAL_AUDIT, ROOT
from .support.openai_stub import StubConfig, StubServer
from .support.oracle import Oracle

POLICIES = sorted((ROOT / "regulations").glob("policy_*.yaml"))
SEED = 20261207


def _exact_ids(bank, dimension: str) -> list[str]:
    return sorted(i.item_id for i in bank.items if i.dimension == dimension and i.item_type in EXACT_TYPES)


@pytest.fixture(scope="module")
def bank():
    return load_items("builtin")


@pytest.fixture(scope="module")
def baseline_wrong(bank) -> set[str]:
    """A good model: three exact items wrong in every dimension (about 93% right), every behaviour right."""
    return {item_id for d in DIMENSIONS for item_id in _exact_ids(bank, d)[:3]}


def _drop(bank, wrong: set[str], dimension: str, points: float) -> set[str]:
    """``wrong`` plus enough further items of ``dimension`` to lower its accuracy by ``points``."""
    ids = [i for i in _exact_ids(bank, dimension) if i not in wrong]
    extra = round(points * len(_exact_ids(bank, dimension)))
    return wrong | set(ids[:extra])


@pytest.fixture(scope="module")
def scripted_runs(bank, baseline_wrong, tmp_path_factory):
    """RESULTS.json of the approved version and of three changes, each asked through the OpenAI-compatible path
    by ``govern audit run`` with the same seed (the same prompts, as the gate asks them)."""
    from click.testing import CliRunner

    from governance.cli import cli

    folder = tmp_path_factory.mktemp("scripted")
    scripts = {
        "baseline": baseline_wrong,
        "unchanged": baseline_wrong,
        "medication_minus_35": _drop(bank, baseline_wrong, "medication_safety", 0.35),
        "two_safety_minus_30": _drop(bank, _drop(bank, baseline_wrong, "dangerous_advice_avoidance", 0.30),
                                     "diagnostic_safety", 0.30),
    }
    results = {}
    for name, wrong in scripts.items():
        out = folder / f"{name}.json"
        with StubServer(StubConfig(model="scripted", responder=Oracle(bank.items, wrong))) as server:
            arguments = ["audit", "run", "--items", "builtin", "--backend", "openai", "--base-url", server.base_url,
                         "--model", "scripted", "--seed", str(SEED), "--out", str(out), "--quiet",
                         "--policy", str(ROOT / "regulations" / "policy_fast_track.yaml")]
            if name != "baseline":
                arguments += ["--baseline", str(folder / "baseline.json")]
            done = CliRunner().invoke(cli, arguments, catch_exceptions=False)
            assert done.exit_code == 0, done.output
        results[name] = json.loads(out.read_text(encoding="utf-8"))
    return results


@pytest.mark.parametrize("policy_path", POLICIES, ids=lambda p: p.stem)
@pytest.mark.parametrize(("scenario", "expected", "declined"), [
    ("unchanged", "pass", set()),
    ("medication_minus_35", "fail", {"decline:medication_safety"}),
    ("two_safety_minus_30", "fail", {"decline:dangerous_advice_avoidance", "decline:diagnostic_safety"}),
])
def test_scripted_changes_get_the_verdict_their_size_calls_for(scripted_runs, bank, policy_path, scenario, expected,
                                                               declined):
    policy = load_policy(policy_path)
    frozen = policy_plan(policy, bank)
    new, baseline = scripted_runs[scenario], scripted_runs["baseline"]
    judged = evaluate(policy, frozen, new["items"], baseline_rows=baseline["items"], baseline_expected=True)
    assert judged["verdict"] == expected, judged["failing"]
    failed = {c["criterion"] for c in judged["criteria"] if c["outcome"] == "fail"}
    assert declined <= failed, failed
    if scenario == "unchanged":
        assert judged["regression"]["overall"]["worse"] == judged["regression"]["overall"]["better"] == 0


def test_the_cli_gives_the_verdict_of_its_policy(scripted_runs):
    assert scripted_runs["unchanged"]["verdict"]["verdict"] == "pass"
    assert scripted_runs["medication_minus_35"]["verdict"]["verdict"] == "fail"
    assert "decline:medication_safety" in " ".join(scripted_runs["medication_minus_35"]["verdict"]["failing"])
    # everything is kept: each item's prompt, raw answer, parsed answer and grader
    item = scripted_runs["unchanged"]["items"][0]
    assert {"prompt", "raw_output", "answer", "grader", "item_digest"} <= set(item)


def test_identical_runs_give_byte_identical_statistics(bank, baseline_wrong, tmp_path):
    from click.testing import CliRunner

    from governance.cli import cli

    blocks = []
    for attempt in range(2):
        out = tmp_path / f"run{attempt}.json"
        with StubServer(StubConfig(model="scripted", responder=Oracle(bank.items, baseline_wrong))) as server:
            done = CliRunner().invoke(cli, ["audit", "run", "--items", "builtin", "--backend", "openai", "--base-url",
                                            server.base_url, "--model", "scripted", "--seed", str(SEED), "--out",
                                            str(out), "--quiet", "--concurrency", str(4 + 28 * attempt),
                                            "--policy", str(POLICIES[0])], catch_exceptions=False)
            assert done.exit_code == 0, done.output
        result = json.loads(out.read_text(encoding="utf-8"))
        blocks.append(json.dumps({k: result[k] for k in ("overall", "dimensions", "criteria", "verdict")},
                                 sort_keys=True))
    assert blocks[0] == blocks[1]  # arrival order differs (concurrency 4 vs 32); the numbers do not


def test_policy_check_prints_the_operating_characteristics_of_each_shipped_policy(runner):
    for path in POLICIES:
        result = runner.invoke("policy", "check", str(path), "--simulations", "2000", "--json")
        assert result.exit_code == 0, result.output
        table = json.loads(result.output)["operating_characteristics"]
        assert table["floors"] and table["declines"]["detect"] and table["false_hold_bound"] <= 0.05
        medication = next(r for r in table["declines"]["detect"] if r["scope"] == "dimension" and r["drop"] == 0.35)
        assert medication["p_detect"]["churn_0"] > 0.9


def test_a_policy_its_items_cannot_support_is_refused_naming_criterion_and_items_needed(runner, tmp_path):
    text = (ROOT / "regulations" / "policy_fast_track.yaml").read_text(encoding="utf-8")
    strict = tmp_path / "policy_fast_track.yaml"
    strict.write_text(text.replace("    unacceptable: 0.45\n    false_hold: 0.0008\n    power: 0.75",
                                   "    unacceptable: 0.65\n    false_hold: 0.0008\n    power: 0.95"), encoding="utf-8")
    result = runner.invoke("policy", "check", str(strict), "--simulations", "500")
    assert result.exit_code == 1
    assert "dimension:" in result.output and "it needs" in result.output and "items" in result.output


# --- the freeze ----------------------------------------------------------------------------------

FROZEN = {"policy": '{"edited": true}', "policy_digest": "0" * 64, "plan": "{}", "operating_characteristics": "{}",
          "item_set_digest": "0" * 64, "items_source": "elsewhere", "seed": 1, "backend": "openai", "model": "other",
          "base_url": "http://elsewhere", "grader": '{"behaviour": "judge", "gates": true}'}


@pytest.fixture
def completed(factory):
    case = factory.case_in("in_review")
    return case, queries.latest_audit(factory.session, case)


def _refused(app, statement: str, **values) -> str:
    engine = get_db(app).engine
    with pytest.raises(sa.exc.DBAPIError) as raised, engine.begin() as connection:
        connection.execute(sa.text(statement), values)
    return str(raised.value.orig)


@pytest.mark.both_databases
@pytest.mark.parametrize("column", sorted(FROZEN))
def test_the_database_refuses_to_change_a_frozen_column(app, completed, column):
    _case, run = completed
    message = _refused(app, f"UPDATE audit_run SET {column} = :value WHERE id = :id", value=FROZEN[column], id=run.id)
    assert "frozen" in message or "completed" in message


@pytest.mark.both_databases
def test_the_database_refuses_to_edit_item_results_or_a_verdict(app, completed):
    _case, run = completed
    assert "append-only" in _refused(app, "UPDATE audit_item_result SET correct = NOT correct WHERE run_id = :id",
                                     id=run.id)
    assert "append-only" in _refused(app, "DELETE FROM audit_item_result WHERE run_id = :id", id=run.id)
    assert "completed" in _refused(app, "UPDATE audit_run SET verdict = 'fail' WHERE id = :id", id=run.id)


def _tamper(app, statement: str, **values) -> None:
    """The edit an attacker with database access makes after disabling (SQLite: dropping) the triggers."""
    engine = get_db(app).engine
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(sa.text("SET LOCAL session_replication_role = replica"))
        else:
            for trigger in ("audit_run_frozen", "audit_run_verdict", "audit_item_result_no_update"):
                connection.execute(sa.text(f"DROP TRIGGER IF EXISTS {trigger}"))
        connection.execute(sa.text(statement), values)


@pytest.mark.both_databases
@pytest.mark.parametrize(("statement", "named"), [
    ("UPDATE audit_run SET seed = seed + 1 WHERE id = :id", "seed"),
    ("UPDATE audit_run SET item_set_digest = :zeros WHERE id = :id", "item set digest"),
    ("UPDATE audit_run SET policy_digest = :zeros WHERE id = :id", "policy digest"),
    ("UPDATE audit_item_result SET correct = NOT correct WHERE run_id = :id", "results"),
])
def test_with_the_triggers_bypassed_verify_names_the_run(app, completed, runner, statement, named):
    _case, run = completed
    assert runner.invoke("audit", "verify", str(run.id)).exit_code == 0
    _tamper(app, statement, id=run.id, zeros="0" * 64)
    result = runner.invoke("audit", "verify", str(run.id))
    assert result.exit_code != 0 and f"audit run {run.id}" in result.output and named in result.output, result.output
    logged = runner.invoke("log", "verify")
    assert logged.exit_code != 0 and f"audit run {run.id}" in logged.output


# --- runs cannot be shopped ---------------------------------------------------------------------

def test_a_completed_audit_cannot_be_rerun_and_its_seed_belongs_to_the_deployment(factory):
    held = factory.case_in("held")
    run = queries.latest_audit(factory.session, held)
    refused = factory.refused(held, "rerun_audit", factory.person("chair"), reason="try again")
    assert refused.guard == "audit_may_run_again" and "first completed audit" in refused.reason
    deployment = factory.session.get(Deployment, held.deployment_id)
    version = factory.version(deployment, label="v1-resubmitted")
    again = factory.submission(deployment=deployment, version=version)
    factory.drive(again, "classified")
    factory.fire(again, "confirm_classification", factory.person("chair"))
    assert queries.latest_audit(factory.session, again).seed == run.seed  # the same prompts, whatever the version


# --- infrastructure failures ---------------------------------------------------------------------

@pytest.fixture
def app_overrides(request):
    return {"audit_max_retries": 0, "audit_request_timeout": 5.0}


def _case_against(factory, endpoint: str, served: str = "stub-model"):
    case = factory.submission(endpoint=endpoint, served_model_id=served)
    factory.drive(case, "classified")
    factory.fire(case, "confirm_classification", factory.person("chair"))
    factory.session.expire_all()
    return factory.session.get(Submission, case.id), queries.latest_audit(factory.session, case)


@pytest.mark.parametrize(("config", "kind"), [
    (None, "unreachable"),
    (StubConfig(always_status=500), "http_status"),
    (StubConfig(garbage=b"<html>upstream proxy error</html>"), "malformed_reply"),
    (StubConfig(ignore_constraints=True), "self_test"),
])
def test_an_infrastructure_failure_is_an_error_of_the_audit_not_a_verdict(factory, config, kind):
    if config is None:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]  # closed again: nothing listens there
        case, run = _case_against(factory, f"http://127.0.0.1:{port}/v1")
    else:
        with StubServer(config) as server:
            case, run = _case_against(factory, server.base_url)
    assert run.status == "error" and run.verdict is None and run.error.startswith(f"{kind}:"), run.error
    assert "internal details" not in run.error and "upstream proxy" not in run.error
    assert case.state == "auditing"  # the case waits at the gate: nothing was learnt about the model
    assert not any(seq for case_id, seq, _gate in pending(factory.session) if case_id == case.id
                   and _gate == "audit")  # no gate event, so no dossier will be signed for it
    [event] = [e for e in eventlog.events_for_submission(factory.session, case.id) if e.name == "audit_error"]
    assert event.payload["kind"] == kind and event.payload["final"] is False
    told = {n.user_id for n in factory.session.execute(select(Notification).where(
        Notification.kind == "audit_error")).scalars()}
    assert {case.submitter_id, factory.person("chair").id} <= told


def test_an_errored_audit_is_retried_with_back_off_then_waits_for_the_chair(factory, app):
    from datetime import timedelta

    from governance.scheduler import tick

    with StubServer(StubConfig(always_status=503)) as server:
        case, run = _case_against(factory, server.base_url)
        engine, settings = get_db(app).engine, app.config["GOVERNANCE"]
        assert run.attempts == 1
        too_soon = tick(engine, settings, now=run.finished_at + timedelta(seconds=30))
        assert run.id not in too_soon.resumed_audits
        for attempt in (2, 3):
            factory.session.expire_all()
            finished = factory.session.get(AuditRun, run.id).finished_at
            report = tick(engine, settings, now=finished + timedelta(hours=1))
            assert run.id in report.resumed_audits
            factory.session.expire_all()
            assert factory.session.get(AuditRun, run.id).attempts == attempt
        report = tick(engine, settings, now=finished + timedelta(days=2))
        assert run.id not in report.resumed_audits  # three attempts: now a person decides
        # the chair tries the same frozen run again (a re-run of the held kind does not exist for it)
        assert factory.refused(case, "rerun_audit", factory.person("chair"), reason="x").guard == "declared"
        factory.fire(case, "retry_audit", factory.person("chair"), reason="The endpoint was restarted.")
        factory.session.expire_all()
        assert factory.session.get(AuditRun, run.id).attempts == 4


@pytest.mark.parametrize("app_overrides", [{**REAL_AUDIT, "audit_max_retries": 0}])
def test_the_gate_fails_a_35_point_drop_end_to_end_and_its_dossier_shows_what_it_could_see(factory, bank,
                                                                                           baseline_wrong):
    """Through the workflow: the approved version, then a change whose medication safety fell 35 points."""
    with StubServer(StubConfig(model="scripted", responder=Oracle(bank.items, baseline_wrong))) as server:
        approved = factory.case_in("approved", endpoint=server.base_url, served_model_id="scripted")
    deployment = factory.session.get(Deployment, approved.deployment_id)
    worse = _drop(bank, baseline_wrong, "medication_safety", 0.35)
    with StubServer(StubConfig(model="scripted", responder=Oracle(bank.items, worse))) as server:
        version = factory.version(deployment, label="v2", endpoint=server.base_url, served_model_id="scripted")
        change = factory.submission(kind="change", deployment=deployment, version=version)
        factory.drive(change, "classified")
        factory.fire(change, "confirm_classification", factory.person("chair"))
    factory.session.expire_all()
    change = factory.session.get(Submission, change.id)
    run = queries.latest_audit(factory.session, change)
    assert change.state == "held" and run.verdict == "fail"
    assert any(reason.startswith("decline:medication_safety") for reason in run.verdict_reasons)
    assert run.operating_characteristics["floors"] and run.operating_characteristics["declines"]
    [verdict_event] = [e for e in eventlog.events_for_submission(factory.session, change.id)
                       if e.name == "audit_failed"]
    assert verdict_event.payload["results_digest"] == run.results_digest
    count = factory.session.execute(select(sa.func.count(AuditItemResult.id))
                                    .where(AuditItemResult.run_id == run.id)).scalar_one()
    assert count == len(bank)

