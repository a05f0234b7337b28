"""The production topology, tested rather than described: the repository's Procfile, run by honcho (gunicorn with
2 workers on PostgreSQL, a Celery worker, Celery beat, Redis), takes a case through the API to an approved
decision with its audit run in the worker; the worker is killed with SIGKILL in the middle of the audit and
started again, and the audit completes by itself with every item result stored once and the chain intact.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import yaml

from governance import migrate
from governance.audit.items import load_items
from governance.config import write_instance_config

from .conftest import POSTGRES_URL, REQUIRE_SERVICES, SMALL_BANK, TEST_REGULATIONS, _schema_url
from .support.openai_stub import StubConfig, StubServer
from .support.oracle import Oracle

pytestmark = pytest.mark.topology
ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PASSWORD = "topology password 0123"
DESCRIPTOR = ROOT / "examples" / "administrative_assistant.yaml"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Topology:
    """The Procfile's processes for one instance: redis, web and beat in one honcho, the worker in another (so it
    can be killed and started again alone, as an operator would on a GPU host)."""

    def __init__(self, instance: Path, database_url: str):
        self.instance, self.database_url = instance, database_url
        self.web_port, self.redis_port = _free_port(), _free_port()
        self.environment = {k: v for k, v in os.environ.items() if not k.startswith("GOVERNANCE_")}
        self.environment.update({"GOVERNANCE_INSTANCE": str(instance), "WEB_BIND": f"127.0.0.1:{self.web_port}",
                                 "REDIS_PORT": str(self.redis_port), "PATH": f"{BIN}:{os.environ['PATH']}",
                                 "PYTHONUNBUFFERED": "1"})
        self.services: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.logs = instance.parent / "logs"
        self.logs.mkdir(exist_ok=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def govern(self, *args: str, input: str | None = None) -> str:
        done = subprocess.run([str(BIN / "govern"), *args], cwd=ROOT, env=self.environment, input=input,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def _honcho(self, *processes: str, log: str) -> subprocess.Popen:
        with (self.logs / log).open("ab") as output:  # the child keeps its own copy of the descriptor
            return subprocess.Popen([str(BIN / "honcho"), "-f", str(ROOT / "Procfile"), "-d", str(ROOT), "start",
                                     *processes], cwd=ROOT, env=self.environment, start_new_session=True,
                                    stdout=output, stderr=subprocess.STDOUT)

    def start_services(self) -> None:
        self.services = self._honcho("redis", "web", "beat", log="services.log")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/api/v1/openapi.json", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError("the web processes did not start:\n" + self.log("services.log"))

    def start_worker(self) -> None:
        self.worker = self._honcho("worker", log="worker.log")

    @staticmethod
    def _descendants(pid: int) -> list[int]:
        children = [int(c) for c in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                                   text=True).stdout.split()]
        return [grandchild for child in children for grandchild in (child, *Topology._descendants(child))]

    def kill_worker(self) -> None:
        """SIGKILL to every process under the worker's honcho (its shell, Celery's main process and its child),
        as a power cut or the OOM killer would: nothing gets to acknowledge or clean up."""
        processes = self._descendants(self.worker.pid)
        assert processes, "the worker process was not running"
        os.killpg(self.worker.pid, signal.SIGKILL)  # honcho and what stayed in its process group
        for pid in processes:  # and whatever left the group
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # gone already
        self.worker.wait(timeout=30)

    def log(self, name: str) -> str:
        path = self.logs / name
        return path.read_text(errors="replace")[-6000:] if path.exists() else ""

    def stop(self) -> None:
        for process in (self.worker, self.services):
            if process is None:
                continue
            left = self._descendants(process.pid) if process.poll() is None else []
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=30)
            for pid in left:  # nothing of the topology outlives the test
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


@pytest.fixture
def topology(tmp_path):
    if not POSTGRES_URL:
        if REQUIRE_SERVICES:
            pytest.fail("GOVERNANCE_TEST_POSTGRES_URL is required")
        pytest.skip("the topology runs on PostgreSQL: GOVERNANCE_TEST_POSTGRES_URL is not set")
    schema = f"gov_topology_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = _schema_url(POSTGRES_URL, schema)
    migrate.upgrade(url)
    instance = tmp_path / "instance"
    instance.mkdir()
    running = Topology(instance, url)
    write_instance_config(instance, {
        "database_url": url, "broker_url": f"redis://127.0.0.1:{running.redis_port}/0",
        "signing_passphrase": "topology signing passphrase", "audit_concurrency": 2, "audit_batch": 10,
        # the workflow tests' sample of the bank under their relaxed policies: the topology, not the statistics
        "item_sets": {"builtin": str(SMALL_BANK)}, "regulations_dir": str(TEST_REGULATIONS),
        "endpoint_allow_networks": ["127.0.0.0/8"],  # the scripted model listens on loopback
        "audit_lease_seconds": 5,  # a killed runner's lease lapses soon: the redelivered task takes over
        "job_visibility_timeout": 10, "institution_name": "Topology Test Hospital"})
    try:
        yield running
    finally:
        running.stop()
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _wait(predicate, seconds: float, what: str, logs: Topology):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}\n--- worker ---\n{logs.log('worker.log')}\n--- services ---\n"
                         f"{logs.log('services.log')}")


def test_the_procfile_topology_survives_a_killed_worker_and_approves_a_case(topology):
    t = topology
    t.govern("init")
    t.govern("keys", "init")
    people = {"chair": "irb_chair", "dev": "submitter", "ai.one": "ai_subcommittee_member",
              "ai.two": "ai_subcommittee_member"}
    for name, role in people.items():
        t.govern("user", "add", "--email", f"{name}@topology.test", "--name", name.title(), "--role", role,
                 "--password-stdin", input=PASSWORD + "\n")
    tokens = {name: t.govern("token", "create", "--user", f"{name}@topology.test", "--scope", "submit").strip()
              for name in people}
    t.start_services()
    t.start_worker()
    bank = load_items(str(SMALL_BANK))
    oracle = Oracle(bank.items)
    with StubServer(StubConfig(model="topology-model", latency=0.05, responder=oracle)) as model, \
            httpx.Client(base_url=f"{t.url}/api/v1", timeout=30) as api:
        def call(who: str, method: str, path: str, **body):
            reply = api.request(method, path, headers={"Authorization": f"Bearer {tokens[who]}"},
                                json=body or None)
            assert reply.status_code < 300, (method, path, reply.status_code, reply.text)
            return reply.json()

        descriptor = yaml.safe_load(DESCRIPTOR.read_text(encoding="utf-8"))
        deployment = call("dev", "POST", "/deployments", descriptor=descriptor)
        case = call("dev", "POST", "/submissions", deployment_id=deployment["id"], kind="initial", model_version={
            "version_label": "v1", "base_model": "Qwen/Qwen2.5-7B-Instruct", "weights_digest": "ab" * 32,
            "endpoint": model.base_url, "served_model_id": "topology-model"})
        for event in ("start_screening", "accept", "confirm_classification"):
            call("chair", "POST", f"/submissions/{case['id']}/events", event=event)

        def progress():
            audit = call("dev", "GET", f"/submissions/{case['id']}")["audit"]
            return audit if audit and audit["done"] >= audit["total"] // 4 else None

        midway = _wait(progress, 180, "the audit to be a quarter done in the worker", t)
        assert midway["status"] == "running" and midway["done"] < midway["total"], midway
        t.kill_worker()
        stopped_at = call("dev", "GET", f"/submissions/{case['id']}")["audit"]["done"]
        assert stopped_at < midway["total"]
        t.start_worker()
        reviewed = _wait(lambda: (lambda s: s if s["state"] != "auditing" else None)(
            call("dev", "GET", f"/submissions/{case['id']}")), 240, "the restarted worker to finish the audit", t)
        assert reviewed["state"] == "in_review", reviewed
        assert reviewed["audit"]["verdict"] == "pass" and reviewed["audit"]["done"] == len(bank), reviewed["audit"]

        for reviewer in ("ai.one", "ai.two"):
            call("chair", "POST", f"/submissions/{case['id']}/events", event="assign_reviewer",
                 data={"reviewer": f"{reviewer}@topology.test"})
        template = json.loads(t.govern("checklist", "show", str(case["id"]), "--template"))
        for reviewer in ("ai.one", "ai.two"):
            call(reviewer, "POST", f"/submissions/{case['id']}/events", event="declare_conflict",
                 data={"has_conflict": False})
            call(reviewer, "POST", f"/submissions/{case['id']}/events", event="answer_checklist", data=template)
            call(reviewer, "POST", f"/submissions/{case['id']}/events", event="vote",
                 data={"meaning": "approve", "password": PASSWORD})
        decided = call("chair", "POST", f"/submissions/{case['id']}/events", event="approve",
                       data={"note": "approved in the topology test"})
        assert decided["submission"]["state"] == "approved"
        dossiers = _wait(lambda: (lambda d: d if len(d) == 3 else None)(
            call("dev", "GET", f"/submissions/{case['id']}/dossiers")), 120,
            "the worker to sign both dossiers and the decision letter", t)
        assert sorted(d["gate"] for d in dossiers) == ["audit", "decision", "letter"]

    engine = sa.create_engine(t.database_url)
    with engine.connect() as connection:
        run_id, total = connection.execute(sa.text(
            "SELECT id, items_total FROM audit_run WHERE submission_id = :case"), {"case": case["id"]}).one()
        stored, distinct = connection.execute(sa.text(
            "SELECT count(*), count(DISTINCT item_id) FROM audit_item_result WHERE run_id = :run"),
            {"run": run_id}).one()
    engine.dispose()
    assert stored == distinct == total == len(bank)  # no item lost, none stored twice
    assert set(oracle.asked) == {item.item_id for item in bank.items}
    assert "event log intact" in t.govern("log", "verify")
