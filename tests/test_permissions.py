"""Every page for every role: the expected status code, written out as a table (the specification of who
sees what). Then: the number of SQL queries per list page does not grow with the number of rows."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from governance import migrate
from governance.db import get_db
from governance.models import Submission

from .conftest import make_app
from .factories import PASSWORD, Factory

ROLES = ["anonymous", "submitter", "other_submitter", "irb_member", "ai_reviewer", "irb_chair", "compliance", "clinician",
         "admin"]
OK, FORBIDDEN, HIDDEN, LOGIN, REDIRECT = 200, 403, 404, 302, 303  # REDIRECT: declare conflicts first
STAFF = {"irb_chair": OK, "compliance": OK, "admin": OK}


def row(default: int, **overrides: int) -> dict[str, int]:
    expected = {role: default for role in ROLES}
    expected["anonymous"] = LOGIN
    expected.update(overrides)
    return expected


#: path template -> expected status per role. {case} is a fast-track case in review (ai_reviewer assigned),
#: {deployment} its deployment, {meeting} a meeting.
MATRIX = {
    "/": row(OK),
    "/cases": row(OK),
    "/account/": row(OK),
    "/deployments/": row(OK),
    "/deployments/new": row(FORBIDDEN, submitter=OK, other_submitter=OK, irb_chair=OK),
    "/deployments/{deployment}": row(HIDDEN, submitter=OK, ai_reviewer=OK, **STAFF),
    "/deployments/{deployment}/edit": row(FORBIDDEN, submitter=OK, other_submitter=HIDDEN, irb_chair=OK),
    "/deployments/{deployment}/versions/new": row(FORBIDDEN, submitter=OK, other_submitter=HIDDEN, irb_chair=OK),
    "/submissions/{case}": row(HIDDEN, submitter=OK, ai_reviewer=OK, **STAFF),
    "/submissions/{case}/audit": row(HIDDEN, submitter=OK, ai_reviewer=OK, **STAFF),
    "/submissions/{case}/audit/progress.json": row(HIDDEN, submitter=OK, ai_reviewer=OK, **STAFF),
    "/review": row(FORBIDDEN, irb_member=OK, ai_reviewer=OK, irb_chair=OK),
    "/submissions/{case}/declare": row(FORBIDDEN, irb_member=HIDDEN, ai_reviewer=OK, irb_chair=OK),
    "/submissions/{case}/checklist": row(FORBIDDEN, irb_member=HIDDEN, ai_reviewer=REDIRECT, irb_chair=REDIRECT),
    "/submissions/{case}/vote": row(FORBIDDEN, irb_member=HIDDEN, ai_reviewer=OK, irb_chair=OK),
    "/submissions/{case}/assign": row(FORBIDDEN, irb_chair=OK),
    "/intake": row(FORBIDDEN, irb_chair=OK, admin=OK),
    "/meetings": row(FORBIDDEN, irb_member=OK, irb_chair=OK, admin=OK),
    "/meetings/{meeting}": row(FORBIDDEN, irb_member=OK, irb_chair=OK, admin=OK),
    "/meetings/{meeting}/quorum.json": row(FORBIDDEN, irb_member=OK, irb_chair=OK, admin=OK),
    "/registry": row(FORBIDDEN, **STAFF),
    "/registry.csv": row(FORBIDDEN, **STAFF),
    "/registry.xlsx": row(FORBIDDEN, **STAFF),
    "/events": row(FORBIDDEN, **STAFF),
    "/admin/users": row(FORBIDDEN, admin=OK),
    "/admin/users/new": row(FORBIDDEN, admin=OK),
    "/admin/tokens": row(FORBIDDEN, admin=OK),
    "/incidents/new": row(FORBIDDEN, clinician=OK, irb_chair=OK),
    "/incidents": row(OK),
    "/notifications": row(OK),
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("permissions")
    database = folder / "db.sqlite3"
    migrate.upgrade(f"sqlite:///{database}")
    (folder / "instance").mkdir()
    app = make_app(folder / "instance", f"sqlite:///{database}")
    session = get_db(app).session_factory()
    factory = Factory(app, session)
    case = factory.case_in("in_review")
    factory.fire(case, "assign_reviewer", factory.person("chair"), reviewer=factory.person("ai1").email)
    users = {"submitter": factory.person("submitter"), "other_submitter": factory.user("submitter"),
             "irb_member": factory.person("board1"), "ai_reviewer": factory.person("ai1"),
             "irb_chair": factory.person("chair"), "compliance": factory.person("compliance"),
             "clinician": factory.person("clinician"), "admin": factory.person("admin")}
    ids = {"case": case.id, "deployment": case.deployment_id, "meeting": factory.meeting().id}
    emails = {role: user.email for role, user in users.items()}
    session.close()
    yield app, ids, emails
    get_db(app).dispose()


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("path", sorted(MATRIX))
def test_route_permissions(world, path, role):
    app, ids, emails = world
    expected = MATRIX[path][role]
    client = app.test_client()
    if role != "anonymous":
        assert client.post("/login", data={"email": emails[role], "password": PASSWORD}).status_code == 302
    response = client.get(path.format(**ids))
    response.close()
    assert response.status_code == expected, (path, role, response.status_code)


# --- query counts do not grow with the rows listed ---------------------------------------------------------
class QueryCounter:
    def __init__(self, engine):
        self.engine, self.count = engine, 0

    def __enter__(self):
        sa.event.listen(self.engine, "before_cursor_execute", self._tick)
        return self

    def __exit__(self, *_exc):
        sa.event.remove(self.engine, "before_cursor_execute", self._tick)

    def _tick(self, *_args, **_kwargs):
        self.count += 1


PAGES = {"irb_chair": ["/", "/cases", "/intake", "/deployments/", "/review", "/meetings", "/incidents",
                       "/notifications"],
         "compliance": ["/registry", "/events", "/registry.csv"], "admin": ["/admin/users"],
         "submitter": ["/", "/deployments/"]}


def test_query_counts_are_constant_in_the_number_of_rows(tmp_path, database_url):
    instance = tmp_path / "instance"
    instance.mkdir()
    app = make_app(instance, database_url)
    session = get_db(app).session_factory()
    factory = Factory(app, session)

    def add_cases(n: int) -> None:
        for _ in range(n):
            case = factory.case_in("in_review")
            factory.fire(case, "assign_reviewer", factory.person("chair"), reviewer=factory.person("ai1").email)

    def counts() -> dict[str, int]:
        result = {}
        for role, paths in PAGES.items():
            client = app.test_client()
            client.post("/login", data={"email": factory.person({"irb_chair": "chair"}.get(role, role)).email,
                                        "password": PASSWORD})
            for path in paths:
                with QueryCounter(get_db(app).engine) as counter:
                    response = client.get(path)
                    response.close()
                assert response.status_code == 200, (role, path)
                result[f"{role} {path}"] = counter.count
        return result

    add_cases(2)
    few = counts()
    add_cases(4)
    many = counts()
    assert many == few
    session.close()
    assert session.bind is not None and Submission is not None
