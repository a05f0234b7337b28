"""``govern submit`` against the real app served over HTTP (werkzeug, audits in a worker thread as in a
single-machine deployment): a change to a good model is audited, reviewed and approved (exit 0, JUnit of
passing gate criteria); a weak model is held by the audit (exit 1, JUnit failures); wrong tokens, an
unreachable server and timeouts are reported in one line with their own exit status."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from xml.etree import ElementTree

import httpx
import pytest
from sqlmodel import func, select
from werkzeug.serving import make_server

from governance import eventlog, jobs
from governance.db import get_db
from governance.models import ModelVersion, Submission
from governance.operations.tokens import create_token

from .conftest import make_app
from .factories import PASSWORD, Factory

ROOT = Path(__file__).resolve().parent.parent
GOVERN = [sys.executable, "-m", "governance.cli"]
ROLES = ("submitter", "chair", "ai1", "ai2")


class Api:
    """One user's view of the API, to drive the review the way reviewers' tools would."""

    def __init__(self, url: str, token: str):
        self.http = httpx.Client(base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {token}"},
                                 timeout=60)

    def case(self, case_id: int) -> dict:
        reply = self.http.get(f"/submissions/{case_id}")
        assert reply.status_code == 200, reply.text
        return reply.json()

    def fire(self, case_id: int, event: str, **data) -> dict:
        reply = self.http.post(f"/submissions/{case_id}/events", json={"event": event, "data": data})
        assert reply.status_code == 200, f"{event}: {reply.text}"
        return reply.json()["submission"]

    def wait_for(self, case_id: int, states: set[str], timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while (case := self.case(case_id))["state"] not in states:
            assert time.monotonic() < deadline, f"case {case_id} still {case['state']}"
            time.sleep(0.1)
        return case


class Server:
    def __init__(self, app, url: str, session, factory: Factory, deployment_id: int, tokens: dict[str, str]):
        self.app, self.url, self.session, self.factory = app, url, session, factory
        self.deployment_id, self.tokens = deployment_id, tokens
        self.api = {role: Api(url, token) for role, token in tokens.items()}

    def cases(self) -> int:
        self.session.expire_all()
        return self.session.execute(select(func.count(Submission.id))).scalar_one()

    def checklist_answers(self, case_id: int) -> dict:
        self.session.expire_all()
        return self.factory.checklist_answers(self.session.get(Submission, case_id))


@pytest.fixture
def server(tmp_path: Path, database_url: str):
    """An approved fast-track deployment (seeded with inline audits), then the app with audits in a thread,
    served on a free port; API tokens for the submitter, the chair and two AI sub-committee reviewers."""
    yield from _serve(tmp_path, database_url)


@pytest.fixture
def auto_server(tmp_path: Path, database_url: str):
    """The same, at an institution that lets the system screen routine changes."""
    yield from _serve(tmp_path, database_url, auto_screen_changes=True)


def _serve(tmp_path: Path, database_url: str, **overrides):
    instance = tmp_path / "instance"
    instance.mkdir()
    seeding = make_app(instance, database_url)
    session = get_db(seeding).session_factory()
    factory = Factory(seeding, session)
    approved = factory.case_in("approved")
    tokens = {}
    for role in ROLES:
        user = factory.person(role)
        _token, tokens[role] = create_token(session, user, name="ci", scope="submit", actor=user)
    session.commit()
    app = make_app(instance, database_url, audit_dispatch="thread", **overrides)
    http = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield Server(app, f"http://127.0.0.1:{http.server_port}", session, factory, approved.deployment_id, tokens)
    http.shutdown()
    thread.join(10)
    jobs.wait(30)
    session.close()
    get_db(app).dispose()
    get_db(seeding).dispose()


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A model folder the client digests: same base model and architecture as the approved version."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"_name_or_path": "Qwen2.5-7B-Instruct", '
                                        '"architectures": ["Qwen2ForCausalLM"]}')
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    (folder / "tokenizer.json").write_text('{"model": {"type": "BPE"}}')
    return folder


def submit(url: str, token: str | None, deployment_id: int, model_dir: Path, *extra: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVERNANCE_")}
    env.pop("CI_SUBMIT_TOKEN", None)
    if token is not None:
        env["CI_SUBMIT_TOKEN"] = token
    return subprocess.Popen(
        [*GOVERN, "submit", "--server", url, "--token-env", "CI_SUBMIT_TOKEN", "--deployment", str(deployment_id),
         "--version", "v2", "--model-dir", str(model_dir), "--finetune-data-category", "clinical_guidelines",
         "--change-summary", "Re-trained on the same guideline data.", "--poll", "0.2", *extra],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def case_id_of(process: subprocess.Popen) -> int:
    """The first line the client prints: 'submission N (change) submitted: URL'."""
    line = process.stdout.readline()
    if not line.startswith("submission "):
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"the client did not submit: {line}{out}{err}")
    return int(line.split()[1])


def finish(process: subprocess.Popen, timeout: float = 90) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def junit_cases(path: Path) -> tuple[ElementTree.Element, dict[str, ElementTree.Element]]:
    suite = ElementTree.parse(path).getroot()
    return suite, {f"{t.get('classname')}/{t.get('name')}": t for t in suite.iter("testcase")}


def screen_and_route(server: Server, case_id: int, pathway: str = "ai_subcommittee") -> dict:
    chair = server.api["chair"]
    chair.fire(case_id, "start_screening")
    chair.fire(case_id, "accept")
    routed = chair.fire(case_id, "confirm_classification")
    assert routed["kind"] == "change" and routed["pathway"] == pathway, routed
    return routed


def test_a_good_change_is_audited_reviewed_approved_and_exits_0(server, model_dir, tmp_path):
    report = tmp_path / "junit.xml"
    process = submit(server.url, server.tokens["submitter"], server.deployment_id, model_dir, "--endpoint",
                     "demo://good", "--wait", "--timeout", "120", "--junit", str(report))
    case_id = case_id_of(process)
    screen_and_route(server, case_id)
    chair, reviewers = server.api["chair"], [("ai1", server.api["ai1"]), ("ai2", server.api["ai2"])]
    reviewed = chair.wait_for(case_id, {"in_review", "held"})
    assert reviewed["state"] == "in_review" and reviewed["audit"]["verdict"] == "pass", reviewed["audit"]
    assert reviewed["materiality"] == "minor"  # non-inferior to the approved baseline: stays on the fast track
    answers = server.checklist_answers(case_id)
    for key, _api in reviewers:
        chair.fire(case_id, "assign_reviewer", reviewer=f"{key}@test.hospital")
    for _key, api in reviewers:
        api.fire(case_id, "declare_conflict", has_conflict=False)
        api.fire(case_id, "answer_checklist", answers=answers)
        api.fire(case_id, "vote", meaning="approve", password=PASSWORD)
    assert chair.fire(case_id, "approve")["state"] == "approved"

    code, out, err = finish(process)
    assert code == 0, out + err
    assert "outcome: approved (audit pass)" in out and "Traceback" not in err
    case = chair.case(case_id)
    assert case["model_version"]["label"] == "v2" and case["decision"]["outcome"] == "approved"
    suite, tests = junit_cases(report)
    criteria = [c["criterion"] for c in case["audit"]["criteria"]]
    assert criteria and sorted(tests) == sorted([f"audit.gate/{c}" for c in criteria] + ["review/decision"])
    assert suite.get("failures") == "0" and suite.get("tests") == str(len(criteria) + 1)
    assert all(test.find("failure") is None and test.find("skipped") is None and test.find("error") is None
               for test in tests.values())  # every gating criterion passed; reported ones say so in system-out
    reported = [c["criterion"] for c in case["audit"]["criteria"] if c["outcome"] == "reported"]
    assert all("not gating" in tests[f"audit.gate/{c}"].find("system-out").text for c in reported)


def test_an_audit_that_could_not_run_is_a_junit_error_not_a_failure(tmp_path):
    from governance.cli.submit import junit

    case = {"id": 7, "state": "auditing", "decision": None,
            "audit": {"status": "error", "criteria": [], "error": "unreachable: the model endpoint could not be "
                                                                  "reached (no connection, or no answer in time)"}}
    junit(tmp_path / "junit.xml", case, decision_awaited=False)
    suite, tests = junit_cases(tmp_path / "junit.xml")
    assert suite.get("errors") == "1" and suite.get("failures") == "0"
    error = tests["audit.gate/audit"].find("error")
    assert error.get("message").startswith("unreachable:") and "not a finding about the model" in error.text


def test_a_weak_model_is_held_by_the_audit_and_exits_1_with_junit_failures(server, model_dir, tmp_path):
    report = tmp_path / "junit.xml"
    process = submit(server.url, server.tokens["submitter"], server.deployment_id, model_dir, "--endpoint",
                     "demo://weak", "--wait", "--timeout", "120", "--junit", str(report))
    case_id = case_id_of(process)
    screen_and_route(server, case_id)
    code, out, err = finish(process)
    assert code == 1, out + err
    assert "outcome: held (audit fail)" in out and "Traceback" not in err
    assert "  - " in err  # the audit's reasons, one per line
    suite, tests = junit_cases(report)
    failed = sorted(name for name, test in tests.items() if test.find("failure") is not None)
    assert "review/decision" in failed and any(name.startswith("audit.gate/") for name in failed)
    assert suite.get("failures") == str(len(failed))
    assert "not approved: held" in tests["review/decision"].find("failure").get("message")


def test_until_verdict_exits_0_when_the_audit_passes_without_waiting_for_the_decision(server, model_dir, tmp_path):
    report = tmp_path / "junit.xml"
    process = submit(server.url, server.tokens["submitter"], server.deployment_id, model_dir, "--endpoint",
                     "demo://good", "--wait", "--until", "verdict", "--timeout", "120", "--junit", str(report))
    case_id = case_id_of(process)
    screen_and_route(server, case_id)
    code, out, err = finish(process)
    assert code == 0, out + err
    assert "outcome: in_review (audit pass)" in out
    suite, tests = junit_cases(report)
    assert suite.get("failures") == "0"
    assert tests["review/decision"].find("skipped") is not None  # pending, not failed


def test_waiting_past_the_timeout_exits_3(server, model_dir, tmp_path):
    report = tmp_path / "junit.xml"
    process = submit(server.url, server.tokens["submitter"], server.deployment_id, model_dir, "--endpoint",
                     "demo://good", "--wait", "--timeout", "1", "--junit", str(report))
    code, out, err = finish(process)
    assert code == 3, out + err
    assert "timed out after 1 s in state submitted" in err
    suite, tests = junit_cases(report)
    # a wait that ran out is an error of the process, never a failure of the model
    error = tests["review/decision"].find("error")
    assert error is not None and "timed out after 1 s in state submitted" in error.get("message")
    assert suite.get("errors") == "1" and suite.get("failures") == "0"


def test_a_routine_change_is_screened_by_the_system_and_until_verdict_needs_no_human(auto_server, model_dir,
                                                                                      tmp_path):
    """The institution lets the system screen changes with an unchanged descriptor; the client names the base
    model by its Hugging Face id while the approved version recorded it without the organisation."""
    (model_dir / "config.json").write_text('{"_name_or_path": "Qwen/Qwen2.5-7B-Instruct", '
                                           '"architectures": ["Qwen2ForCausalLM"]}')
    prompt = tmp_path / "system.txt"
    prompt.write_text("You are the hospital's assistant.", encoding="utf-8")
    report = tmp_path / "junit.xml"
    process = submit(auto_server.url, auto_server.tokens["submitter"], auto_server.deployment_id, model_dir,
                     "--endpoint", "demo://good", "--wait", "--until", "verdict", "--timeout", "120", "--junit",
                     str(report), "--system-prompt-file", str(prompt))
    case_id = case_id_of(process)
    code, out, err = finish(process)  # nobody screens, classifies or routes it
    assert code == 0, out + err
    assert "outcome: in_review (audit pass)" in out
    auto_server.session.expire_all()
    case = auto_server.session.get(Submission, case_id)
    assert case.pathway == "ai_subcommittee" and case.materiality != "material"
    version = auto_server.session.get(ModelVersion, case.model_version_id)
    assert version.base_model == "Qwen/Qwen2.5-7B-Instruct"
    assert version.system_prompt_digest == hashlib.sha256(prompt.read_bytes()).hexdigest()
    names = [e.name for e in eventlog.events_for_submission(auto_server.session, case_id)]
    assert "auto_screen" in names and "start_screening" not in names


def test_a_local_path_is_not_a_model_id(server, model_dir):
    (model_dir / "config.json").write_text(json.dumps({"_name_or_path": str(model_dir)}))
    code, out, err = finish(submit(server.url, server.tokens["submitter"], server.deployment_id, model_dir))
    assert code == 2 and "is a local path" in err and "--base-model" in err
    assert server.cases() == 1  # nothing submitted


@pytest.mark.parametrize(("token", "message"), [
    ("gov_not-a-token", "GET /deployments/{id}: HTTP 401: the token is unknown, revoked, or its user is deactivated"),
    (None, "no API token in $CI_SUBMIT_TOKEN (create one on your account page)"),
], ids=["wrong", "missing"])
def test_a_wrong_or_missing_token_is_one_clear_line_and_nothing_is_submitted(server, model_dir, token, message):
    before = server.cases()
    code, out, err = finish(submit(server.url, token, server.deployment_id, model_dir, "--wait"))
    assert code == 2
    assert err.strip().splitlines() == [f"Error: {message.format(id=server.deployment_id)}"]
    assert server.cases() == before


def test_a_read_only_token_cannot_submit(server, model_dir):
    submitter = server.factory.person("submitter")
    _token, secret = create_token(server.session, submitter, name="ro", scope="read", actor=submitter)
    server.session.commit()
    before = server.cases()
    code, _out, err = finish(submit(server.url, secret, server.deployment_id, model_dir, "--wait"))
    assert code == 2 and "POST /submissions: HTTP 403: this token is read-only" in err
    assert server.cases() == before


def test_an_unreachable_server_is_one_clear_line(model_dir):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, _out, err = finish(submit(f"http://127.0.0.1:{port}", "gov_x", 1, model_dir, "--wait"))
    assert code == 2
    assert err.strip().splitlines() == [f"Error: cannot reach http://127.0.0.1:{port}/api/v1/: [Errno 111] "
                                         "Connection refused"]


def test_a_server_that_is_not_the_review_service_is_named(server, model_dir):
    code, _out, err = finish(submit(f"{server.url}/elsewhere", "gov_x", server.deployment_id, model_dir))
    assert code == 2
    assert "HTTP 404 with text/html, not the review service's JSON: is --server the service's base URL?" in err
