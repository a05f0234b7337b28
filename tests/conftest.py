"""Fixtures: an app per test on a fresh database (SQLite, and PostgreSQL for database tests when
GOVERNANCE_TEST_POSTGRES_URL is set), sessions, a CLI runner, and factories for users and cases."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from argon2 import PasswordHasher
from hypothesis import HealthCheck, settings

from governance import migrate, security
from governance.app import create_app
from governance.cli import cli
from governance.db import get_db

from .factories import Factory

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
POSTGRES_URL = os.environ.get("GOVERNANCE_TEST_POSTGRES_URL", "")


def _per_worker_redis(url: str) -> str:
    """Under pytest-xdist each worker gets a Redis database of its own (15, 14, ...), since Celery tests flush it."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not url or not worker.startswith("gw"):
        return url
    base, _, database = url.rpartition("/")
    start = int(database) if database.isdigit() else 15
    return f"{base}/{(start - int(worker[2:])) % 16}"


REDIS_URL = _per_worker_redis(os.environ.get("GOVERNANCE_TEST_REDIS_URL", ""))
REQUIRE_SERVICES = os.environ.get("GOVERNANCE_TEST_REQUIRE_SERVICES") == "1"
TEST_SECRET = "test-secret-key-not-for-production-0123456789"

settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("default")
#: Passwords in tests are hashed with cheap argon2id parameters (hashes record their parameters, so verifying
#: works the same); tests/test_security.py checks the production parameters themselves.
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
security.use_hasher(CHEAP_HASHER)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Database tests run on SQLite and, when configured, on PostgreSQL too."""
    if "backend" in metafunc.fixturenames:
        backends = ["sqlite"]
        if metafunc.definition.get_closest_marker("both_databases") and (POSTGRES_URL or REQUIRE_SERVICES):
            backends.append("postgresql")
        metafunc.parametrize("backend", backends, scope="function")


#: Modules whose module-scoped fixtures are expensive (a demo instance, scripted audits of the shipped bank, a
#: browser) run on one pytest-xdist worker each; every other test is handed out on its own. They are collected
#: first, longest first, so the two workers finish together.
ONE_WORKER_MODULES = ("test_topology", "test_cli", "test_story", "test_judge", "test_properties", "test_gate",
                      "test_audit", "test_api_schema", "test_permissions", "test_workflow_table",
                      "test_classification", "test_deployment_table", "test_gpu")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: position for position, name in enumerate(ONE_WORKER_MODULES)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: the rest keep their order


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """Module-wide work units for :data:`ONE_WORKER_MODULES`, one test per unit elsewhere (xdist's own
    ``loadgroup`` marks node ids in a way pytest 9 no longer reads)."""
    from xdist.scheduler import LoadScopeScheduling

    class ExpensiveModulesTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if Path(module).stem in ONE_WORKER_MODULES else nodeid

    return ExpensiveModulesTogether(config, log)


def pytest_sessionstart(session: pytest.Session) -> None:
    if REQUIRE_SERVICES:
        for name, url in (("PostgreSQL", POSTGRES_URL), ("Redis", REDIS_URL)):
            if not url:
                raise pytest.UsageError(f"{name} is required (GOVERNANCE_TEST_REQUIRE_SERVICES=1) but its URL is unset")
        engine = sa.create_engine(POSTGRES_URL)
        try:
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
        except sa.exc.OperationalError as exc:
            raise pytest.UsageError(f"PostgreSQL at {POSTGRES_URL} is unreachable: {exc}") from None
        finally:
            engine.dispose()
        import redis

        try:
            redis.Redis.from_url(REDIS_URL).ping()
        except redis.RedisError as exc:
            raise pytest.UsageError(f"Redis at {REDIS_URL} is unreachable: {exc}") from None


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite database, copied for each test (migrating once keeps the suite fast)."""
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    migrate.upgrade(f"sqlite:///{path}")
    return path


def _schema_url(base: str, schema: str) -> str:
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}options=-csearch_path%3D{schema}"


@pytest.fixture(scope="session")
def postgres_schema() -> str:
    """A schema of its own in the shared test database, migrated once, dropped at the end."""
    if not POSTGRES_URL:
        pytest.skip("GOVERNANCE_TEST_POSTGRES_URL is not set")
    schema = f"gov_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(POSTGRES_URL)
    with engine.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    migrate.upgrade(_schema_url(POSTGRES_URL, schema))
    yield schema
    with engine.begin() as connection:
        connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


def truncate_all(url: str) -> None:
    """Empty every table between tests; the append-only triggers are bypassed by replication role."""
    from sqlmodel import SQLModel

    engine = sa.create_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(sa.text("SET LOCAL session_replication_role = replica"))
        connection.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture
def database_url(backend: str, tmp_path: Path, sqlite_template: Path, request: pytest.FixtureRequest) -> str:
    if backend == "postgresql":
        schema = request.getfixturevalue("postgres_schema")
        url = _schema_url(POSTGRES_URL, schema)
        truncate_all(url)
        yield url
        truncate_all(url)
        return
    path = tmp_path / "governance.sqlite3"
    shutil.copy(sqlite_template, path)
    yield f"sqlite:///{path}"


#: Workflow tests audit a small sample of the bank (6 items per dimension) under copies of the shipped policies
#: whose declared power is relaxed to what those items allow: a case goes through its gate in a fraction of a
#: second. Tests of the gate's statistics use the shipped bank and policies (``REAL_AUDIT``).
SMALL_BANK = ROOT / "tests" / "data" / "bank_small"


def _relaxed_regulations() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="governance-test-regulations-"))
    for path in (ROOT / "regulations").glob("*.yaml"):
        if not path.name.startswith("policy_"):
            shutil.copy(path, folder / path.name)
            continue
        policy = yaml.safe_load(path.read_text(encoding="utf-8"))
        for floor in policy["floors"]:
            floor["power"] = 0.0
        for rate in policy.get("rates", []):
            rate["power"] = 0.0
        if policy.get("declines"):
            policy["declines"]["detect"] = []
        (folder / path.name).write_text(yaml.safe_dump(policy, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return folder


TEST_REGULATIONS = _relaxed_regulations()
#: Overrides that give an app the shipped bank and the shipped policies.
REAL_AUDIT = {"regulations_dir": ROOT / "regulations", "item_sets": {"builtin": "builtin"}}


def make_app(instance: Path, database_url: str, **overrides):
    config = {"instance_path": instance, "database_url": database_url, "secret_key": TEST_SECRET, "demo_mode": True,
              "audit_dispatch": "inline", "dossier_dispatch": "queue", "mail_dispatch": "inline",
              "regulations_dir": TEST_REGULATIONS, "item_sets": {"builtin": str(SMALL_BANK)},
              # the scripted models and judges tests start listen on loopback; the SSRF tests use an app without it
              "endpoint_allow_networks": ("127.0.0.0/8",),
              "TESTING": True, "WTF_CSRF_ENABLED": False, **overrides}
    return create_app(config)


@pytest.fixture(scope="module")
def ruleset():
    """The shipped rule files, loaded once per module."""
    from governance.classification.rules import load_ruleset

    return load_ruleset(ROOT / "regulations")


@pytest.fixture(scope="module")
def checklist_items():
    """The shipped checklist items by id."""
    from governance.checklists import load_checklists

    return {item.id: item for checklist in load_checklists(ROOT / "checklists") for item in checklist.items}


@pytest.fixture
def app_overrides() -> dict:
    """Override in a test module to change the app's settings."""
    return {}


@pytest.fixture
def app(tmp_path: Path, database_url: str, app_overrides: dict):
    instance = tmp_path / "instance"
    instance.mkdir()
    application = make_app(instance, database_url, **app_overrides)
    yield application
    from governance import jobs

    jobs.wait(30)
    get_db(application).dispose()


@pytest.fixture
def session(app):
    """A session of the test's own (no app context pushed: requests get theirs, as in production)."""
    db_session = get_db(app).session_factory()
    yield db_session
    db_session.rollback()
    db_session.close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def institution(app):
    """The app's settings, with the institution's signing key made (dossiers, letters, minutes, checkpoints)."""
    from governance.dossier import keys as signing_keys

    settings = app.config["GOVERNANCE"]
    signing_keys.init_keys(settings)
    return settings


@pytest.fixture
def factory(app, session) -> Factory:
    return Factory(app, session)


class CliRunner:
    """Invoke ``govern`` against the test app's instance."""

    def __init__(self, app):
        self.app = app
        self.runner = app.test_cli_runner(mix_stderr=False) if _mix_stderr_supported() else app.test_cli_runner()

    def invoke(self, *args: str, input: str | None = None):
        from flask.cli import ScriptInfo

        return self.runner.invoke(cli, list(args), obj=ScriptInfo(create_app=lambda: self.app), input=input)


def _mix_stderr_supported() -> bool:
    import inspect

    from click.testing import CliRunner as ClickRunner

    return "mix_stderr" in inspect.signature(ClickRunner.__init__).parameters


@pytest.fixture
def runner(app) -> CliRunner:
    return CliRunner(app)


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    if not SHARED.exists():
        pytest.fail(f"the shared datasets folder {SHARED} is missing")
    return SHARED / "datasets"


class Inbox:
    """An aiosmtpd handler that keeps every message it receives."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        from email import message_from_bytes, policy

        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


@pytest.fixture
def smtp_server():
    """A real SMTP server (aiosmtpd) on loopback: (its inbox, its port)."""
    import socket

    from aiosmtpd.controller import Controller

    with socket.socket() as probe:  # aiosmtpd connects to its own port to check it is up: it needs a real one
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
def mailing(tmp_path: Path, database_url: str, smtp_server):
    """``make(**overrides) -> (factory, inbox)``: an app that e-mails through the test's SMTP server, with a factory
    on a session of its own (both closed after the test)."""
    from .factories import Factory

    inbox, port = smtp_server
    made = []

    def make(**overrides):
        instance = tmp_path / f"mailing-instance-{len(made)}"
        instance.mkdir()
        app = make_app(instance, database_url, smtp_host="127.0.0.1", smtp_port=port,
                       smtp_sender="irb@test.hospital", **overrides)
        session = get_db(app).session_factory()
        made.append((app, session))
        return Factory(app, session), inbox

    yield make
    for app, session in made:
        session.close()
        get_db(app).dispose()
