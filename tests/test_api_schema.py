"""Schemathesis against the OpenAPI document of /api/v1: for every documented operation, generated inputs
(valid and invalid, from schemathesis' coverage and fuzzing phases) never get a 5xx, and every response has a
documented status code, a documented content type and a body that matches the documented schema (so every
error is JSON with a message).

How it is wired, and why:
- The schema is loaded with ``from_dict(spec())`` at import time and parametrized eagerly (one test per
  operation); the lazy loader (``schemathesis.pytest.from_fixture``) reads ``request.node._nodeid``, which
  pytest 9.2 no longer has. The first test checks that the app serves exactly this document.
- The database is seeded once per backend for the module (each seeded case runs a demo audit) and shared
  by the operations' tests, which run in file order: state they change is seen by the next ones, the same on
  every run (``derandomize``). On PostgreSQL too when it is configured: some inputs fail only there (NUL
  characters in text, integers beyond 32 bits).
- Generation is bounded (``max_examples``; the coverage phase is deterministic) and needs no deadline.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from governance.api.openapi import spec
from governance import jobs
from governance.db import get_db
from governance.operations.tokens import create_token

from .conftest import POSTGRES_URL, _schema_url, make_app, truncate_all
from .factories import Factory

pytestmark = pytest.mark.both_databases
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
schema = schemathesis.openapi.from_dict(spec())


@pytest.fixture(scope="module")
def seeded_apps(tmp_path_factory, sqlite_template):
    """Per backend, built on first use: an app on a database with deployments and cases in several states,
    and the chair's submit token (the chair sees every case and may fire most events, so generated requests
    reach the handlers instead of stopping at 403/404)."""
    built: dict[str, tuple] = {}

    def get(backend: str, request: pytest.FixtureRequest):
        if backend not in built:
            folder = tmp_path_factory.mktemp(f"api-schema-{backend}")
            if backend == "postgresql":
                url = _schema_url(POSTGRES_URL, request.getfixturevalue("postgres_schema"))
                truncate_all(url)
            else:
                shutil.copy(sqlite_template, folder / "governance.sqlite3")
                url = f"sqlite:///{folder / 'governance.sqlite3'}"
            (folder / "instance").mkdir()
            app = make_app(folder / "instance", url)
            session = get_db(app).session_factory()
            factory = Factory(app, session)
            for state in ("approved", "in_review", "held", "submitted", "draft"):
                factory.case_in(state)
            chair = factory.person("chair")
            _token, secret = create_token(session, chair, name="schemathesis", scope="submit", actor=chair)
            session.commit()
            session.close()
            built[backend] = (app, {"Authorization": f"Bearer {secret}"}, url)
        return built[backend][:2]

    yield get
    jobs.wait(30)
    for backend, (app, _headers, url) in built.items():
        get_db(app).dispose()
        if backend == "postgresql":
            truncate_all(url)


@pytest.fixture
def seeded(seeded_apps, backend: str, request: pytest.FixtureRequest):
    """(app, auth headers). Taking ``backend`` also parametrizes the tests, which gives each operation's item
    a distinct node id: on pytest 9.2 the unparametrized items schemathesis makes all share one id."""
    return seeded_apps(backend, request)


def test_the_app_serves_the_document_under_test(seeded):
    app, _headers = seeded
    assert app.test_client().get("/api/v1/openapi.json").json == json.loads(json.dumps(spec()))


def test_every_api_route_is_an_operation_of_the_document_and_nothing_else_is(seeded):
    """The document is generated from the routes' own declarations: a route cannot be undocumented, and the
    document cannot name an operation that has no route."""
    app, _headers = seeded
    routed = {(method, re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule))
              for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/v1/") and
              rule.endpoint != "api.openapi" for method in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {(method.upper(), path) for path, item in spec()["paths"].items() for method in item}
    assert routed == documented


@schema.parametrize()
@settings(max_examples=25, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
def test_generated_requests_get_documented_non_5xx_responses(case, seeded):
    app, headers = seeded
    case.call_and_validate(app=app, headers=headers, checks=CHECKS)
