"""The minimal web workspace: sign-in, dashboards by visibility, a case page whose buttons are the
allowed transitions, refusals with their guard's reason, CSRF."""

from __future__ import annotations

import re

import pytest

from sqlalchemy import select

from governance.models import Event, Submission

from .conftest import make_app
from .factories import PASSWORD


def login(client, user, password=PASSWORD):
    return client.post("/login", data={"email": user.email, "password": password}, follow_redirects=False)


def test_login_page_renders_with_a_csrf_token(tmp_path, database_url):
    app = make_app(tmp_path, database_url, WTF_CSRF_ENABLED=True)
    page = app.test_client().get("/login")
    assert page.status_code == 200
    assert b'name="csrf_token"' in page.data and b"Sign in" in page.data
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]


def test_pages_need_a_login(client):
    for path in ("/", "/submissions/1"):
        response = client.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_failed_logins_are_recorded_and_throttled_not_locked(client, factory, session):
    user = factory.person("submitter")
    for _ in range(5):
        response = login(client, user, "wrong password!")
        assert response.status_code == 200 and b"not right" in response.data
    assert login(client, user).status_code == 429  # throttled from this address (tests/test_sessions.py)
    names = session.execute(select(Event.name).where(Event.name.like("login_%"))).scalars().all()
    assert names.count("login_failed") == 5 and "login_refused_locked" not in names


def test_login_and_logout(client, factory):
    user = factory.person("chair")
    response = login(client, user)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert b"Cases" in client.get("/").data
    assert client.post("/logout").status_code == 302
    assert client.get("/").status_code == 302


def test_open_redirects_are_refused(client, factory):
    response = client.post("/login?next=https://evil.example/x", data={"email": factory.person("chair").email,
                                                                        "password": PASSWORD})
    assert response.headers["Location"] == "/"


def test_dashboard_shows_only_visible_cases(client, factory):
    mine = factory.case_in("submitted")
    other_submitter = factory.user("submitter")
    login(client, other_submitter)
    page = client.get("/")
    assert mine.title.encode() not in page.data
    assert client.get(f"/submissions/{mine.id}").status_code == 404
    client.post("/logout")
    login(client, factory.person("submitter"))
    page = client.get("/").data.decode()
    assert mine.title in page and "submitted" in page


def test_case_page_offers_allowed_actions_and_explains_refused_ones(client, factory):
    case = factory.case_in("in_review")
    login(client, factory.person("chair"))
    page = client.get(f"/submissions/{case.id}").data.decode()
    assert "Assign reviewers" in page and "Classification" in page and "Rule trail" in page
    assert "Record decision: approved" in page
    assert re.search(r"Not now: \d+ eligible reviewers assigned", page)
    assert "decision_supported_by_votes" not in page  # guard ids are for the log, not the reader
    assert "China (NMPA)" in page and "United States (FDA CDS)" in page and "European Union" in page


def test_firing_an_action_from_the_page(client, factory, session):
    case = factory.case_in("screening")
    login(client, factory.person("chair"))
    response = client.post(f"/submissions/{case.id}/events/return_to_submitter",
                           data={"return_to_submitter-reason": "Attach the DPIA.", "lock_version": case.lock_version})
    assert response.status_code == 303
    session.expire_all()
    assert session.get(Submission, case.id).state == "returned"
    page = client.get(f"/submissions/{case.id}").data.decode()
    assert "Done: Return to submitter." in page and "Attach the DPIA." in page


def test_a_refused_action_says_why_without_the_guard_id_and_changes_nothing(client, factory, session):
    case = factory.case_in("draft")
    login(client, factory.person("chair"))
    response = client.post(f"/submissions/{case.id}/events/submit", data={}, follow_redirects=True)
    assert b"Refused: only submitter may do this (Submit for review)" in response.data
    assert b"roles" not in response.data.split(b"Refused:")[1].split(b"</")[0]
    session.expire_all()
    assert session.get(Submission, case.id).state == "draft"


def test_a_stale_form_is_a_conflict(client, factory, session):
    case = factory.case_in("screening")
    login(client, factory.person("chair"))
    response = client.post(f"/submissions/{case.id}/events/accept", data={"lock_version": case.lock_version - 1},
                           follow_redirects=True)
    assert b"changed since you opened it" in response.data
    session.expire_all()
    assert session.get(Submission, case.id).state == "screening"


def test_csrf_is_enforced(tmp_path, database_url):
    app = make_app(tmp_path, database_url, WTF_CSRF_ENABLED=True)
    client = app.test_client()
    assert client.get("/login").status_code == 200
    response = client.post("/login", data={"email": "chair@test.hospital", "password": PASSWORD})
    assert response.status_code == 400 and b"form expired" in response.data
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', client.get("/login").data.decode()).group(1)
    accepted = client.post("/login", data={"email": "chair@test.hospital", "password": PASSWORD, "csrf_token": token})
    assert accepted.status_code == 200  # the form was accepted (and the unknown user refused)


@pytest.mark.both_databases
def test_an_id_beyond_the_database_integer_range_is_not_found(client, factory, app):
    """Row ids are 32-bit in the database: 2**31 in any page's path is a 404, never a 500 from PostgreSQL."""
    login(client, factory.person("chair"))
    with_ids = sorted({rule.rule for rule in app.url_map.iter_rules() if "<id:" in rule.rule})
    assert len(with_ids) > 10
    for rule in with_ids:
        path = re.sub(r"<id:[^>]+>", str(2**31), re.sub(r"<(?:string:)?[a-z_]+>", "x", rule))
        assert client.get(path).status_code in (404, 405), path
    assert client.get("/submissions/2147483647").status_code == 404
