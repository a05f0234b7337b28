"""Sessions that end, passwords, sign-in throttling and failed signatures (issue 12; SECURITY.md 1b-1o, 2j).

- a session cookie copied before sign-out, a password change, a role change or a deactivation is refused after;
- idle and absolute timeouts end a session;
- the password policy (length, the common-password list, the account's own name, guessability) everywhere a
  password is set;
- wrong passwords are throttled per account and address (429) without locking the account for other
  addresses; unknown e-mails cost an argon2 verification like known ones;
- a wrong signature password is an event, and the third one locks signing for that session.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from governance import security
from governance.app import create_app
from governance.models import Event, User
from governance.operations.users import set_active, set_roles
from governance.security import WeakPasswordError, check_password_strength

from .conftest import TEST_SECRET, make_app
from .factories import PASSWORD
from .test_web import login


def _twin(app, client):
    """A second browser holding a copy of ``client``'s session cookie (as a thief would)."""
    other = app.test_client()
    other.set_cookie("session", client.get_cookie("session").value)
    return other


def _from(app, address: str):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def _events(session, name: str) -> list[Event]:
    session.expire_all()
    return session.execute(select(Event).where(Event.name == name).order_by(Event.seq)).scalars().all()


# --- sessions that end ----------------------------------------------------------------------------

def test_a_cookie_copied_before_sign_out_is_refused_after_it(app, client, factory, session):
    user = factory.person("submitter")
    assert login(client, user).status_code == 302
    thief = _twin(app, client)
    assert thief.get("/account/").status_code == 200  # the copy works while the session lives
    assert client.post("/logout").status_code == 302
    replay = thief.get("/account/")
    assert replay.status_code == 302 and "/login" in replay.headers["Location"]
    assert [e.payload["user"] for e in _events(session, "signed_out")] == [user.email]
    assert login(client, user).status_code == 302 and client.get("/account/").status_code == 200


def test_a_password_change_ends_the_other_sessions_and_keeps_this_one(app, client, factory):
    user = factory.person("submitter")
    login(client, user)
    elsewhere = app.test_client()
    login(elsewhere, user)
    reply = client.post("/account/password", data={"current": PASSWORD, "new": "a new and quite long pass phrase"})
    assert reply.status_code == 303
    assert client.get("/account/").status_code == 200
    assert elsewhere.get("/account/").status_code == 302


def test_a_role_change_or_a_deactivation_ends_the_sessions(app, client, factory, session):
    reviewer, other = factory.user("ai_subcommittee_member"), factory.user("submitter")
    login(client, reviewer)
    set_roles(session, session.get(User, reviewer.id), ["submitter"], actor=factory.person("admin"))
    session.commit()
    assert client.get("/account/").status_code == 302
    second = app.test_client()
    login(second, other)
    set_active(session, session.get(User, other.id), False, actor=factory.person("admin"))
    session.commit()
    assert second.get("/account/").status_code == 302


def test_idle_and_absolute_timeouts_end_the_session(client, factory):
    login(client, factory.person("submitter"))
    with client.session_transaction() as cookie:
        cookie["seen_at"] -= 29 * 60
    assert client.get("/account/").status_code == 200  # 29 idle minutes: still fine (the default is 30)
    with client.session_transaction() as cookie:
        cookie["seen_at"] -= 31 * 60
    reply = client.get("/account/")
    assert reply.status_code == 302 and "/login" in reply.headers["Location"]
    assert b"without activity" in client.get("/login").data

    login(client, factory.person("submitter"))
    with client.session_transaction() as cookie:
        cookie["auth_at"] -= 12 * 3600 + 60  # active all along, but signed in more than 12 hours ago
    assert client.get("/account/").status_code == 302
    assert b"hours after sign-in" in client.get("/login").data


def test_the_timeouts_are_settings(tmp_path, database_url, factory):
    app = make_app(tmp_path, database_url, session_idle_minutes=5, session_absolute_hours=1)
    client = app.test_client()
    login(client, factory.person("submitter"))
    with client.session_transaction() as cookie:
        cookie["seen_at"] -= 6 * 60
    assert client.get("/account/").status_code == 302
    assert app.config["PERMANENT_SESSION_LIFETIME"].total_seconds() == 3600


# --- passwords ------------------------------------------------------------------------------------

@pytest.mark.parametrize("password, says", [
    ("short", "at least 12 characters (this one has 5)"),
    ("aaaaaaaaaaaa", "too easy to guess"),
    ("password1234", "30,000 most common passwords"),
    ("1234567890ab", "too easy to guess"),
    ("ann.lee is my password", "your e-mail address or your name"),
])
def test_the_password_policy_says_what_is_wrong(password, says):
    with pytest.raises(WeakPasswordError, match=says.replace("(", r"\(").replace(")", r"\)")):
        check_password_strength(password, user_inputs=("ann.lee@example.org", "Ann Lee"))
    check_password_strength(PASSWORD, user_inputs=("ann.lee@example.org", "Ann Lee"))


def test_the_policy_holds_on_the_account_page_the_admin_page_and_the_cli(client, factory, runner):
    login(client, factory.person("admin"))
    page = client.post("/account/password", data={"current": PASSWORD, "new": "aaaaaaaaaaaa"})
    assert page.status_code == 400 and b"too easy to guess" in page.data
    page = client.post("/admin/users/new", data={"email": "new@test.hospital", "name": "New", "roles": "submitter",
                                                  "password": "password1234"}, follow_redirects=True)
    assert b"30,000 most common passwords" in page.data
    result = runner.invoke("user", "add", "--email", "cli@test.hospital", "--name", "Cli", "--role", "submitter",
                           "--password-stdin", input="password1234\n")
    assert result.exit_code != 0 and "30,000 most common passwords" in (result.output + str(result.exception))


def test_the_policy_message_is_translated(client, factory):
    login(client, factory.person("submitter"))
    client.set_cookie("locale", "zh_CN")
    page = client.post("/account/password", data={"current": PASSWORD, "new": "short"})
    assert page.status_code == 400 and "至少" in page.data.decode()


# --- sign-in throttling and timing ----------------------------------------------------------------

def test_wrong_passwords_are_throttled_per_account_and_address_without_locking_the_account(app, factory, session):
    victim, bystander = factory.person("chair"), factory.person("submitter")
    attacker = _from(app, "10.9.9.9")
    for _ in range(5):  # login_max_failures
        assert login(attacker, victim, "wrong password!").status_code == 200
    refused = login(attacker, victim, "wrong password!")
    assert refused.status_code == 429 and b"Too many wrong passwords" in refused.data
    assert "Retry-After" in refused.headers
    assert login(attacker, victim).status_code == 429  # even the right one, from this address, for now
    owner = _from(app, "10.1.1.1")
    assert login(owner, victim).status_code == 302  # the chair is not locked out
    assert login(attacker, bystander).status_code == 302  # nor is anyone else from that address
    assert len(_events(session, "login_failed")) == 5 and not _events(session, "login_refused_locked")


def test_password_spraying_from_one_address_is_throttled(tmp_path, database_url, factory):
    app = make_app(tmp_path, database_url, login_max_failures_per_address=3)
    sprayer = _from(app, "10.7.7.7")
    people = [factory.user("submitter") for _ in range(4)]
    for person in people[:3]:
        assert login(sprayer, person, "Summer2026!!").status_code == 200
    assert login(sprayer, people[3], "Summer2026!!").status_code == 429


def test_guessing_the_current_password_on_the_account_page_is_throttled(client, factory):
    login(client, factory.person("submitter"))
    for _ in range(5):
        assert client.post("/account/password", data={"current": "guess guess guess", "new": PASSWORD + "x"}
                           ).status_code == 400
    assert client.post("/account/password", data={"current": PASSWORD, "new": PASSWORD + "x"}).status_code == 429


def test_an_unknown_email_costs_one_argon2_verification_like_a_known_one(client, factory, monkeypatch):
    known = factory.person("submitter")
    real = security._hasher
    verified: list[str] = []

    class Spy:
        def hash(self, password):
            return real.hash(password)

        def verify(self, hashed, password):
            verified.append(hashed)
            return real.verify(hashed, password)

        def check_needs_rehash(self, hashed):
            return real.check_needs_rehash(hashed)

    monkeypatch.setattr(security, "_hasher", Spy())
    assert login(client, known, "wrong password!").status_code == 200
    assert verified == [known.password_hash]
    verified.clear()
    reply = client.post("/login", data={"email": "nobody@test.hospital", "password": "wrong password!"})
    assert reply.status_code == 200 and b"not right" in reply.data
    assert len(verified) == 1 and verified[0].startswith("$argon2id$") and verified[0] != known.password_hash


def test_a_redis_broker_gives_the_throttle_redis_storage(tmp_path, database_url):
    app = create_app({"instance_path": tmp_path, "database_url": database_url, "secret_key": TEST_SECRET,
                      "broker_url": "redis://127.0.0.1:6379/9"})
    assert app.config["RATELIMIT_STORAGE_URI"] == "redis://127.0.0.1:6379/9"
    assert make_app(tmp_path, database_url).config["RATELIMIT_STORAGE_URI"] == "memory://"


# --- failed electronic signatures -----------------------------------------------------------------

def _vote_ready(factory):
    case = factory.case_in("in_review")
    reviewer = factory.person("ai1")
    factory.fire(case, "assign_reviewer", factory.person("chair"), reviewer=reviewer.email)
    factory.prepare_reviewer(case, reviewer)
    return case, reviewer


def test_failed_signatures_are_events_and_lock_signing_for_the_session(app, client, factory, session):
    case, reviewer = _vote_ready(factory)
    login(client, reviewer)
    url = f"/submissions/{case.id}/vote"
    for attempt in (1, 2, 3):
        page = client.post(url, data={"meaning": "approve", "password": f"wrong guess {attempt}"},
                           follow_redirects=True).data.decode()
        assert "signature was not applied" in page
        failures = _events(session, "signature_failed")
        assert len(failures) == attempt
        assert failures[-1].actor == reviewer.email and failures[-1].submission_id == case.id
        assert failures[-1].payload["attempt"] == attempt and "password" not in failures[-1].payload
    assert failures[-1].payload["locked"] is True
    page = client.post(url, data={"meaning": "approve", "password": PASSWORD}, follow_redirects=True).data.decode()
    assert "signing is locked for this session" in page  # even the right password
    assert len(_events(session, "signature_refused_locked")) == 1 and not _events(session, "vote")
    # A copy of the cookie from before the failures unlocks nothing: the count is in the event log.
    fresh = app.test_client()
    login(fresh, reviewer)  # signing in again (with the password) starts a new signing session
    reply = fresh.post(url, data={"meaning": "approve", "password": PASSWORD})
    assert reply.status_code == 303 and len(_events(session, "vote")) == 1


def test_failed_api_signatures_are_events_and_lock_the_token(client, factory, session):
    from governance.operations.tokens import create_token

    case, reviewer = _vote_ready(factory)
    _token, secret = create_token(session, reviewer, name="ci", scope="submit", actor=reviewer)
    session.commit()
    headers = {"Authorization": f"Bearer {secret}"}
    url = f"/api/v1/submissions/{case.id}/events"
    for _ in range(3):
        reply = client.post(url, headers=headers, json={"event": "vote", "data": {"meaning": "approve",
                                                                                  "password": "wrong"}})
        assert reply.status_code == 409 and reply.json["guard"] == "signature_password_valid"
    reply = client.post(url, headers=headers, json={"event": "vote", "data": {"meaning": "approve",
                                                                              "password": PASSWORD}})
    assert reply.status_code == 409 and "locked" in reply.json["error"]
    assert len(_events(session, "signature_failed")) == 3
