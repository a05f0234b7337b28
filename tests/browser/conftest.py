"""Browser tests: Playwright driving Debian's Chromium against the real app, served from the test by a
threaded werkzeug server on a migrated SQLite file database, with CSRF on, audits in the worker thread on
the demo backend and dossiers rendered and signed for real.

Screenshots go to ``test-artifacts/screenshots/``; with ``GOVERNANCE_TEST_UPDATE_SCREENSHOTS=1`` (or
``GOVERNANCE_UPDATE_SCREENSHOTS=1``) they are also written to ``docs/screenshots/``.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from flask import got_request_exception
from werkzeug.serving import make_server

from governance.db import get_db
from governance.dossier import keys as signing_keys

from ..conftest import REQUIRE_SERVICES, ROOT, make_app
from ..factories import Factory

CHROMIUM = os.environ.get("GOVERNANCE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "test-artifacts" / "screenshots"
DOCS = ROOT / "docs" / "screenshots"

# The app refuses unknown GOVERNANCE_* settings in the environment; the screenshot switch belongs to the
# test suite, so the short spelling is moved to the suite's own prefix before any app is built.
if os.environ.pop("GOVERNANCE_UPDATE_SCREENSHOTS", None) == "1":
    os.environ["GOVERNANCE_TEST_UPDATE_SCREENSHOTS"] = "1"
UPDATE_DOCS = os.environ.get("GOVERNANCE_TEST_UPDATE_SCREENSHOTS") == "1"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    """Debian's Chromium (``playwright install`` cannot download a browser here), without the background
    networking that would try to reach hosts this network refuses."""
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        message = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium; `make test` does it)"
        if REQUIRE_SERVICES:
            pytest.fail(f"{message}; it is required because GOVERNANCE_TEST_REQUIRE_SERVICES=1")
        pytest.skip(message)
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "headless": True, "args": CHROMIUM_ARGS}


@dataclass
class LiveServer:
    """The app served on a free local port, and the server-side errors seen while it ran."""

    app: object
    url: str
    errors: list[BaseException] = field(default_factory=list)

    @property
    def settings(self):
        return self.app.config["GOVERNANCE"]


@pytest.fixture
def live_server(tmp_path: Path, database_url: str) -> Iterator[LiveServer]:
    instance = tmp_path / "instance"
    instance.mkdir()
    app = make_app(instance, database_url, WTF_CSRF_ENABLED=True, TESTING=False, audit_dispatch="thread",
                   dossier_dispatch="inline", signing_passphrase="browser test signing passphrase")
    signing_keys.init_keys(app.config["GOVERNANCE"])
    server = make_server("127.0.0.1", 0, app, threaded=True)
    live = LiveServer(app, f"http://127.0.0.1:{server.server_port}")

    def record(sender, exception, **extra):
        live.errors.append(exception)

    got_request_exception.connect(record, app)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield live
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()
        got_request_exception.disconnect(record, app)
        from governance import jobs

        jobs.wait(30)
        get_db(app).dispose()


@pytest.fixture
def live_factory(live_server: LiveServer) -> Iterator[Factory]:
    session = get_db(live_server.app).session_factory()
    yield Factory(live_server.app, session)
    session.rollback()
    session.close()


class Screenshots:
    """Full-page PNGs of the pages the story passes through, named for the docs."""

    def __init__(self) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        if UPDATE_DOCS:
            DOCS.mkdir(parents=True, exist_ok=True)
        self.taken: list[Path] = []

    def __call__(self, page, name: str, *, docs: bool = True) -> Path:
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        if docs and UPDATE_DOCS:
            shutil.copyfile(path, DOCS / path.name)
        self.taken.append(path)
        return path


@pytest.fixture
def screenshot() -> Screenshots:
    return Screenshots()
