"""The ``govern`` command: end to end in a new instance folder, and its error messages."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from governance.config import write_instance_config

from .conftest import SMALL_BANK, TEST_REGULATIONS

ROOT = Path(__file__).resolve().parent.parent
GOVERN = [sys.executable, "-m", "governance.cli"]


def govern(instance: Path, *args: str, input: str | None = None, check: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVERNANCE_")}
    env["GOVERNANCE_INSTANCE"] = str(instance)
    result = subprocess.run([*GOVERN, *args], cwd=ROOT, env=env, input=input, capture_output=True, text=True,
                            timeout=300)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def govern_in_process(instance: Path, *args: str) -> str:
    """The same command in this process (no interpreter start): for the many steps of one story. Exits 0."""
    from click.testing import CliRunner

    from governance.cli import cli

    environment = {k: None for k in os.environ if k.startswith("GOVERNANCE_")}
    result = CliRunner().invoke(cli, list(args), env={**environment, "GOVERNANCE_INSTANCE": str(instance)},
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A new instance folder after `govern init && govern demo` (shared by this module's tests), with the demo's
    output. Its gates ask the workflow tests' sample of the bank under their relaxed policies: this module tests
    the command, not the statistics (tests/test_judge.py runs the demo on the shipped bank and policies)."""
    instance = tmp_path_factory.mktemp("cli") / "instance"
    govern(instance, "init", check=True)
    write_instance_config(instance, {"item_sets": {"builtin": str(SMALL_BANK)},
                                     "regulations_dir": str(TEST_REGULATIONS)})
    demo = govern(instance, "demo", check=True)
    assert "chair@demo.hospital" in demo.stdout
    return instance, demo


@pytest.fixture(scope="module")
def demo_instance(demo_run) -> Path:
    return demo_run[0]


def test_the_demo_says_each_step_on_stderr_and_keeps_stdout_for_its_report(demo_run):
    _, demo = demo_run
    steps = re.findall(r"^\[(\d+)/(\d+)\] (.+) … \(\d+ s\)$", demo.stderr, re.MULTILINE)
    assert len(steps) > 5
    assert [int(step) for step, _, _ in steps] == list(range(1, len(steps) + 1))
    assert {int(total) for _, total, _ in steps} == {len(steps)}  # "n of N" is true: every step is announced
    assert any("auditing" in doing for _, _, doing in steps) and any("dossier" in doing for _, _, doing in steps)
    assert re.search(r"^demo ready in \d+ s$", demo.stderr, re.MULTILINE)
    assert not re.search(r"^\[\d+/\d+\]", demo.stdout, re.MULTILINE)  # stdout: only the cases and accounts


def test_init_demo_and_log_verify_in_a_new_instance(demo_instance):
    assert (demo_instance / "config.toml").stat().st_mode & 0o777 == 0o600
    assert "secret_key" in (demo_instance / "config.toml").read_text()
    verified = govern(demo_instance, "log", "verify")
    assert verified.returncode == 0 and "event log intact" in verified.stdout
    again = govern(demo_instance, "init", check=True)  # idempotent
    assert "wrote a new secret key" not in again.stdout
    rerun = govern(demo_instance, "demo", check=True)
    assert "created" not in rerun.stdout and "Literature research assistant" in rerun.stdout
    listed = json.loads(govern(demo_instance, "submission", "list", "--json", check=True).stdout)
    states = {row["state"] for row in listed}
    assert {"approved", "approved_with_conditions", "in_review", "held", "submitted", "draft"} <= states


def test_changing_one_event_payload_is_named_by_log_verify(demo_instance, tmp_path):
    copy = tmp_path / "instance"
    subprocess.run(["cp", "-r", str(demo_instance), str(copy)], check=True)
    database = sqlite3.connect(copy / "governance.sqlite3")
    database.execute("DROP TRIGGER event_no_update")
    database.execute("UPDATE event SET payload = json_set(payload, '$.reason', 'forged') WHERE seq = 17")
    database.commit()
    database.close()
    result = govern(copy, "log", "verify")
    assert result.returncode == 1
    assert "broken at seq 17" in result.stdout


def _password(instance: Path, email: str) -> str:
    return json.loads((instance / "demo-accounts.json").read_text())[email]


def test_a_demo_draft_is_driven_to_a_decision_with_fire(demo_instance):
    listed = json.loads(govern(demo_instance, "submission", "list", "--state", "draft", "--json", check=True).stdout)
    case = str(listed[0]["id"])
    chair, dev = "chair@demo.hospital", "dev@demo.hospital"
    refused = govern(demo_instance, "fire", case, "submit", "--as", chair)
    assert refused.returncode == 1
    assert "refused by guard 'roles'" in refused.stderr and "only submitter may" in refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    # the steps between run in this process (the same commands, without starting an interpreter each time)
    for event, actor in (("submit", dev), ("start_screening", chair), ("accept", chair),
                         ("confirm_classification", chair)):
        govern_in_process(demo_instance, "fire", case, event, "--as", actor)
    shown = json.loads(govern_in_process(demo_instance, "submission", "show", case, "--json"))
    assert shown["state"] == "in_review" and shown["audit"]["verdict"] == "pass"
    reviewers = ["ai.zhou@demo.hospital", "ai.xu@demo.hospital"]
    for reviewer in reviewers:
        govern_in_process(demo_instance, "fire", case, "assign_reviewer", "--as", chair,
                          "--data", json.dumps({"reviewer": reviewer}))
    template = govern_in_process(demo_instance, "checklist", "show", case, "--template")
    for reviewer in reviewers:
        govern_in_process(demo_instance, "fire", case, "declare_conflict", "--as", reviewer,
                          "--data", '{"has_conflict": false}')
        govern_in_process(demo_instance, "fire", case, "answer_checklist", "--as", reviewer, "--data", template)
        govern_in_process(demo_instance, "fire", case, "vote", "--as", reviewer, "--data",
                          json.dumps({"meaning": "approve", "password": _password(demo_instance, reviewer)}))
    decided = govern(demo_instance, "fire", case, "approve", "--as", chair, check=True)
    assert "in_review → approved" in decided.stdout
    assert govern(demo_instance, "log", "verify").returncode == 0


@pytest.mark.parametrize(("args", "message"), [
    (("fire", "9999", "submit", "--as", "dev@demo.hospital"), "no submission 9999"),
    (("fire", "1", "submit", "--as", "nobody@x.org"), "no user with e-mail nobody@x.org"),
    (("fire", "1", "teleport", "--as", "chair@demo.hospital"), "'teleport' is not an event"),
    (("fire", "1", "comment", "--as", "chair@demo.hospital", "--data", "{bad"), "--data is not valid JSON"),
    (("submission", "show", "424242"), "no submission 424242"),
])
def test_user_errors_are_one_line_without_traceback(demo_instance, args, message):
    result = govern(demo_instance, *args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_token_create_prints_a_token_that_authenticates_and_revoke_ends_it(demo_instance):
    from governance.app import create_app
    from governance.db import get_db

    created = govern(demo_instance, "token", "create", "--user", "dev@demo.hospital", "--scope", "submit", check=True)
    secret = created.stdout.strip()
    assert created.stdout.count("\n") == 1 and secret.startswith("gov_")  # alone: export T=$(govern token create …)
    token_id = created.stderr.split()[1]
    assert f"govern token revoke {token_id}" in created.stderr
    app = create_app({"instance_path": demo_instance})
    try:
        client = app.test_client()
        me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
        assert me.status_code == 200 and me.json["email"] == "dev@demo.hospital" and me.json["token_scope"] == "submit"
        assert "revoked" in govern(demo_instance, "token", "revoke", token_id, check=True).stdout
        assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    finally:
        get_db(app).dispose()
    read_only = govern(demo_instance, "token", "create", "--user", "compliance@demo.hospital", check=True)
    assert "read" in read_only.stderr  # read scope unless asked


@pytest.mark.parametrize(("args", "message"), [
    (("token", "create", "--user", "nobody@x.org"), "no user with e-mail nobody@x.org"),
    (("token", "create", "--user", "dev@demo.hospital", "--scope", "admin"), "Invalid value for '--scope'"),
    (("token", "revoke", "424242"), "no token 424242"),
])
def test_token_errors_are_one_line(demo_instance, args, message):
    result = govern(demo_instance, *args)
    assert result.returncode != 0 and message in result.stderr and "Traceback" not in result.stderr


def test_the_token_variable_of_govern_submit_is_not_read_as_a_setting(tmp_path):
    """`export GOVERNANCE_TOKEN=…` for `govern submit` made every other command in that shell fail."""
    from governance.config import ConfigError, load_settings

    assert load_settings(tmp_path, environ={"GOVERNANCE_TOKEN": "gov_x"}).instance_path == tmp_path
    with pytest.raises(ConfigError, match="unknown setting GOVERNANCE_TOKENS"):
        load_settings(tmp_path, environ={"GOVERNANCE_TOKENS": "gov_x"})


def test_user_add_with_password_from_stdin(demo_instance):
    result = govern(demo_instance, "user", "add", "--email", "new.member@demo.hospital", "--name", "New Member",
                    "--role", "irb_member", "--non-scientist", "--external", "--password-stdin",
                    input="a long enough password\n")
    assert result.returncode == 0 and "irb_member" in result.stdout
    weak = govern(demo_instance, "user", "add", "--email", "weak@demo.hospital", "--name", "Weak", "--role",
                  "submitter", "--password-stdin", input="short\n")
    assert weak.returncode == 1 and "at least 12 characters" in weak.stderr


def test_workflow_diagram(tmp_path):
    out = tmp_path / "workflow.mmd"
    govern(tmp_path / "instance", "workflow", "diagram", "--out", str(out), check=True)
    text = out.read_text()
    assert text.startswith("stateDiagram-v2") and "auditing --> in_review: audit_passed" in text
    svg = govern(tmp_path / "instance", "workflow", "diagram", "--format", "svg", check=True).stdout
    assert "<svg" in svg


def test_web_app_refuses_a_default_secret_outside_demo_mode(tmp_path):
    from governance.app import create_app
    from governance.config import ConfigError

    with pytest.raises(ConfigError, match="secret_key is missing or a known default"):
        create_app({"instance_path": tmp_path, "secret_key": "change-me", "demo_mode": False})
    result = govern(tmp_path / "fresh", "run", "--port", "5999")
    assert result.returncode == 1 and "secret_key is missing" in result.stderr


def test_the_demo_leaves_signed_dossiers_that_verify(demo_instance, tmp_path):
    listed = json.loads(govern(demo_instance, "dossier", "list", "--json", check=True).stdout)
    assert {row["gate"] for row in listed} == {"audit", "decision", "letter"}
    decision = next(row for row in listed if row["gate"] == "decision")
    path = Path(decision["path"])
    verified = govern(demo_instance, "dossier", "verify", str(path))
    assert verified.returncode == 0, verified.stderr
    assert "matches stored dossier" in verified.stdout
    certificate = tmp_path / "institution.pem"
    govern(demo_instance, "keys", "export-cert", str(certificate), check=True)
    nss = tmp_path / "nss"
    nss.mkdir()
    subprocess.run(["certutil", "-N", "-d", f"sql:{nss}", "--empty-password"], check=True)
    subprocess.run(["certutil", "-A", "-d", f"sql:{nss}", "-n", "irb", "-t", "CT,C,C", "-i", str(certificate)],
                   check=True)
    output = subprocess.run(["pdfsig", "-nssdir", f"sql:{nss}", str(path)], capture_output=True, text=True).stdout
    assert "Signature is Valid." in output and "Certificate is Trusted." in output
    text = subprocess.run(["pdftotext", "-enc", "UTF-8", str(path), "-"], capture_output=True, text=True).stdout
    assert "Per dimension" in text and "Wilson 95%" in text          # the audit table
    assert "Votes — electronic signatures" in text and "approve" in text  # votes with their manifestations
    assert "人工智能部署伦理审查档案" in text                             # Chinese as text
    flipped = tmp_path / "flipped.pdf"
    data = bytearray(path.read_bytes())
    data[data.index(b"stream", 3000) + 30] ^= 0x01
    flipped.write_bytes(bytes(data))
    assert govern(demo_instance, "dossier", "verify", str(flipped)).returncode == 1
    assert "Digest Mismatch." in subprocess.run(["pdfsig", "-nssdir", f"sql:{nss}", str(flipped)],
                                                capture_output=True, text=True).stdout
