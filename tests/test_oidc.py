"""Sign-in through OpenID Connect with claims granting roles, against a real OpenID provider (the PyPI package
``oidc-provider-mock``: Authlib's authorization server behind Flask) started once for this module in its own
process on a free loopback port, with PKCE enforced at its token endpoint (the mock itself does not check it).

- a person whose ``groups`` claim holds "irb-chairs" presses "Sign in with ...", signs in at the provider, comes
  back signed in with the role irb_chair; an account with source ``oidc``, the provider's ``(iss, sub)`` and no
  password; taken out of the group, their next sign-in removes the role (a roles_changed event, no actor,
  source: oidc) and ends the older session;
- a person with no mapped group is refused with a message saying so, and a login_refused event;
- a forged state, a code replayed into another sign-in (its nonce differs), a wrong PKCE verifier and a
  cancelled sign-in sign nobody in;
- the provider down: "unavailable"; a local break-glass admin still signs in with ``auth_methods = ("oidc",
  "local")``; accounts from a provider cannot get a local password.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from governance.config import ConfigError, as_public_dict
from governance.errors import GovernanceError
from governance.models import Event, RoleAssignment, User
from governance.operations import oidc
from governance.operations.users import authenticate, find_user, set_password

from .conftest import make_app
from .factories import PASSWORD
from .support.processes import stop as stop_process

requests = pytest.importorskip("requests")
pytest.importorskip("authlib", reason="Authlib is not installed (pip install 'Authlib>=1.3,<2')")
if importlib.util.find_spec("oidc_provider_mock") is None:  # not imported here: it runs in its own process
    pytest.skip("oidc-provider-mock is not installed (pip install 'oidc-provider-mock>=0.3,<0.4')",
                allow_module_level=True)

CLIENT_ID, CLIENT_SECRET = "irb-workflow", "client-secret-for-tests"
ROLE_MAP = {"irb-chairs": ["irb_chair", "irb_member"], "irb-members": ["irb_member"]}
DISPLAY = "Hospital Login"
#: The provider, wrapped so that its token endpoint checks PKCE (S256) like a production provider does.
PROVIDER = r'''
import base64, hashlib, io, json, sys
from urllib.parse import parse_qs, urlsplit
from werkzeug.serving import make_server
import oidc_provider_mock

provider = oidc_provider_mock.app(require_nonce=True)
challenges = {}

def app(environ, start_response):
    path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD")
    if path == "/oauth2/authorize" and method == "POST":
        query = parse_qs(environ.get("QUERY_STRING", ""))
        challenge = (query.get("code_challenge") or [""])[0], (query.get("code_challenge_method") or [""])[0]
        def start(status, headers, exc_info=None):
            for name, value in headers:
                if name.lower() == "location":
                    for code in parse_qs(urlsplit(value).query).get("code", []):
                        challenges[code] = challenge
            return start_response(status, headers, exc_info)
        return provider(environ, start)
    if path == "/oauth2/token" and method == "POST":
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        form = parse_qs(body.decode())
        code, verifier = (form.get("code") or [""])[0], (form.get("code_verifier") or [""])[0]
        challenge, kind = challenges.pop(code, ("", ""))
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if kind != "S256" or not verifier or digest != challenge:
            start_response("400 Bad Request", [("Content-Type", "application/json")])
            return [json.dumps({"error": "invalid_grant", "error_description": "PKCE verification failed"}).encode()]
    return provider(environ, start_response)

make_server("localhost", int(sys.argv[1]), app, threaded=True).serve_forever()
'''


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Provider:
    """The OpenID provider in a process of its own (its Authlib deprecation warnings stay there)."""

    def __init__(self):
        self.port, self.process = _free_port(), None

    @property
    def issuer(self) -> str:
        return f"http://localhost:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-W", "ignore", "-c", PROVIDER, str(self.port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the provider exited: {self.process.stderr.read().decode(errors='replace')}")
            try:
                if requests.get(f"{self.issuer}/.well-known/openid-configuration", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.05)
        raise RuntimeError("the provider did not answer within 15 s")

    def stop(self) -> None:
        stop_process(self.process)
        if self.process is not None:
            self.process.stderr.close()
        self.process = None

    def person(self, sub: str, **claims) -> None:
        """Register (or change) the person ``sub`` with these claims."""
        response = requests.put(f"{self.issuer}/users/{sub}", json=claims, timeout=5)
        assert response.status_code == 204, response.text


@pytest.fixture(scope="module")
def provider():
    server = Provider()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def app_overrides(provider) -> dict:
    return {"auth_methods": ("oidc", "local"), "oidc_issuer": provider.issuer, "oidc_allow_http_loopback": True,
            "oidc_client_id": CLIENT_ID, "oidc_client_secret": CLIENT_SECRET, "oidc_roles_claim": "groups",
            "oidc_role_map": ROLE_MAP, "oidc_display_name": DISPLAY, "oidc_timeout": 5}


def start(client) -> str:
    """Press the button: the address at the provider the browser is sent to."""
    response = client.post("/auth/oidc/start")
    assert response.status_code == 302, response.data
    return response.headers["Location"]


def at_provider(address: str, sub: str) -> str:
    """Sign in at the provider as ``sub``: the path and query it sends the browser back to."""
    answer = requests.post(address, data={"sub": sub}, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    back = urlsplit(answer.headers["Location"])
    assert back.path == "/auth/oidc/callback"
    return f"{back.path}?{back.query}"


def sign_in(client, sub: str):
    return client.get(at_provider(start(client), sub))


def roles(session, mail: str) -> set[str]:
    session.expire_all()
    user = find_user(session, mail)
    return set(session.execute(select(RoleAssignment.role).where(RoleAssignment.user_id == user.id)).scalars())


def events(session, name: str) -> list[Event]:
    session.expire_all()
    return list(session.execute(select(Event).where(Event.name == name).order_by(Event.seq)).scalars())


def flashed(client) -> str:
    return client.get("/login").get_data(as_text=True)


@pytest.mark.both_databases
def test_group_claim_grants_the_role_and_a_changed_claim_changes_it(app, client, session, provider):
    provider.person("carla", email="carla@test.hospital", email_verified=True, name="Carla Chair",
                    groups=["irb-chairs", "cafeteria"])
    page = client.get("/login").get_data(as_text=True)
    assert f"Sign in with {DISPLAY}" in page and 'name="password"' in page  # the button and the break-glass form

    address = start(client)
    assert address.startswith(f"{provider.issuer}/oauth2/authorize?")
    query = parse_qs(urlsplit(address).query)
    assert query["client_id"] == [CLIENT_ID] and query["response_type"] == ["code"]
    assert query["code_challenge_method"] == ["S256"] and query["nonce"][0] and query["state"][0]
    assert query["redirect_uri"] == ["http://127.0.0.1:5000/auth/oidc/callback"]  # server_name_url + the path
    assert set(query["scope"][0].split()) == {"openid", "email", "profile"}
    response = client.get(at_provider(address, "carla"))
    assert response.status_code == 302 and response.headers["Location"] == "/", response.data
    assert client.get("/").status_code == 200

    user = find_user(session, "carla@test.hospital")
    assert (user.name, user.source, user.password_hash) == ("Carla Chair", "oidc", "")
    assert (user.oidc_issuer, user.oidc_subject) == (provider.issuer, "carla")
    assert roles(session, user.email) == {"irb_chair", "irb_member"}
    created = events(session, "user_created")[-1]
    assert created.actor_id is None
    assert created.payload == {"user": "carla@test.hospital", "name": "Carla Chair", "roles": ["irb_chair", "irb_member"],
                               "is_scientist": True, "is_affiliated": True, "source": "oidc",
                               "issuer": provider.issuer, "subject": "carla"}

    # out of the chairs' group at the provider: the next sign-in takes the role away
    provider.person("carla", email="carla@test.hospital", email_verified=True, name="Carla C. Chair",
                    groups=["irb-members"])
    again = app.test_client()
    assert sign_in(again, "carla").status_code == 302
    assert roles(session, user.email) == {"irb_member"}
    changed = events(session, "roles_changed")[-1]
    assert changed.actor_id is None and changed.actor == "system"
    assert changed.payload == {"user": "carla@test.hospital", "added": [], "removed": ["irb_chair"], "source": "oidc",
                               "issuer": provider.issuer, "subject": "carla"}
    assert find_user(session, user.email).name == "Carla C. Chair"
    renamed = events(session, "name_changed")[-1]  # the name printed on votes and minutes changes in the log
    assert renamed.actor_id is None and renamed.payload == {
        "user": "carla@test.hospital", "from": "Carla Chair", "to": "Carla C. Chair", "source": "oidc",
        "issuer": provider.issuer, "subject": "carla"}
    assert client.get("/").status_code == 302 and again.get("/").status_code == 200  # the older session ended
    count = len(events(session, "roles_changed")), len(events(session, "name_changed"))
    assert sign_in(app.test_client(), "carla").status_code == 302  # the same claims: no change, no event
    assert (len(events(session, "roles_changed")), len(events(session, "name_changed"))) == count
    # found by (iss, sub): one account, however often
    assert len(session.execute(select(User).where(User.oidc_subject == "carla")).all()) == 1


def test_no_mapped_group_is_refused_with_a_message(app, client, session, provider):
    provider.person("colin", email="colin@test.hospital", email_verified=True, name="Colin Cook",
                    groups=["cafeteria"])
    response = sign_in(client, "colin")
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert "none of your groups grants a role in this application" in flashed(client)
    assert client.get("/").status_code == 302  # not signed in
    assert find_user(session, "colin@test.hospital") is None
    refused = events(session, "login_refused")[-1]
    assert refused.actor_id is None
    assert refused.payload == {"email": "colin@test.hospital", "source": "127.0.0.1",
                               "reason": "no value of the roles claim grants a role", "provider": provider.issuer,
                               "subject": "colin"}


def test_an_oidc_account_whose_groups_no_longer_grant_a_role_loses_its_roles(app, session, provider):
    provider.person("nina", email="nina@test.hospital", groups=["irb-members"])
    assert sign_in(app.test_client(), "nina").status_code == 302
    provider.person("nina", email="nina@test.hospital", groups=[])
    assert sign_in(app.test_client(), "nina").headers["Location"] == "/login"
    assert roles(session, "nina@test.hospital") == set()
    assert events(session, "roles_changed")[-1].payload["removed"] == ["irb_member"]


def test_forged_state_signs_nobody_in(app, client, session, provider):
    provider.person("mona", email="mona@test.hospital", groups=["irb-members"])
    back = at_provider(start(client), "mona")
    forged = back.replace("state=", "state=x", 1)
    assert client.get(forged).headers["Location"] == "/login"
    assert "did not complete" in flashed(client)
    assert client.get(back).headers["Location"] == "/login"  # the started sign-in was used up by the attempt
    assert find_user(session, "mona@test.hospital") is None
    # an answer nobody started in this browser
    stranger = app.test_client()
    assert stranger.get(back).headers["Location"] == "/login" and find_user(session, "mona@test.hospital") is None


def test_a_code_from_another_sign_in_is_refused(app, client, session, provider):
    """An attacker's code injected into the victim's sign-in: its state is right, but the code was issued for another
    PKCE challenge and another nonce (each checked on its own in test_validation_of_the_id_token)."""
    provider.person("mona", email="mona@test.hospital", groups=["irb-members"])
    injected = parse_qs(urlsplit(at_provider(start(app.test_client()), "mona")).query)["code"][0]
    state = parse_qs(urlsplit(at_provider(start(client), "mona")).query)["state"][0]
    response = client.get(f"/auth/oidc/callback?code={injected}&state={state}")
    assert response.headers["Location"] == "/login" and "did not complete" in flashed(client)
    assert find_user(session, "mona@test.hospital") is None


def test_wrong_pkce_verifier_is_refused_by_the_provider(app, client, session, provider, caplog):
    provider.person("mona", email="mona@test.hospital", groups=["irb-members"])
    back = at_provider(start(client), "mona")
    with client.session_transaction() as browser:
        browser["oidc_pending"] = {**browser["oidc_pending"], "verifier": "x" * 64}
    with caplog.at_level("WARNING", logger="governance.operations.oidc"):
        assert client.get(back).headers["Location"] == "/login"
    assert any("PKCE verification failed" in record.getMessage() for record in caplog.records)
    assert find_user(session, "mona@test.hospital") is None


def test_cancelled_at_the_provider(app, client, session, provider):
    address = start(client)
    answer = requests.post(address, data={"action": "deny"}, allow_redirects=False, timeout=10)
    assert answer.status_code == 302 and "error=access_denied" in answer.headers["Location"]
    back = urlsplit(answer.headers["Location"])
    assert client.get(f"{back.path}?{back.query}").headers["Location"] == "/login"
    assert "did not complete" in flashed(client)


def test_validation_of_the_id_token(app, provider):
    """The provider's own tokens: a nonce not this sign-in's, and an answer that comes too late, are refused; the
    discovery document must name the configured issuer."""
    settings = app.config["GOVERNANCE"]
    provider.person("mona", email="mona@test.hospital", groups=["irb-members"])
    address, pending = oidc.begin(settings, "http://127.0.0.1:5000/auth/oidc/callback")
    back = parse_qs(urlsplit(at_provider(address, "mona")).query)
    answer = {"code": back["code"][0], "state": back["state"][0]}
    with pytest.raises(oidc.AnswerRefused, match="nonce"):
        oidc.finish(settings, {**pending, "nonce": "another"}, answer)

    address, pending = oidc.begin(settings, "http://127.0.0.1:5000/auth/oidc/callback")
    back = parse_qs(urlsplit(at_provider(address, "mona")).query)
    answer = {"code": back["code"][0], "state": back["state"][0]}
    with pytest.raises(oidc.AnswerRefused, match="seconds"):
        oidc.finish(settings, pending, answer, now=pending["at"] + oidc.PENDING_SECONDS + 1)
    identity = oidc.finish(settings, pending, answer)
    assert (identity.subject, identity.email, identity.values) == ("mona", "mona@test.hospital", ("irb-members",))


def test_break_glass_admin_signs_in_locally_and_provider_accounts_have_no_password(app, client, session, factory,
                                                                                   provider, caplog):
    admin = factory.user("admin", email="breakglass@test.hospital")
    provider.person("carla", email="carla@test.hospital", groups=["irb-chairs"])
    assert sign_in(app.test_client(), "carla").status_code == 302
    carla = find_user(session, "carla@test.hospital")
    with pytest.raises(GovernanceError, match="no password of this app"):
        set_password(session, carla, "A-long-enough-passphrase-9", actor=admin)
    session.rollback()
    assert authenticate(session, carla.email, "", settings=app.config["GOVERNANCE"]) is None
    session.rollback()

    provider.stop()
    try:
        with caplog.at_level("ERROR", logger="governance.operations.oidc"):
            response = client.post("/auth/oidc/start")
        assert response.headers["Location"] == "/login"
        assert f"Sign-in through {DISPLAY} is unavailable right now" in flashed(client)
        assert any("unavailable" in record.getMessage() and provider.issuer in record.getMessage()
                   for record in caplog.records)
        # break glass: the local admin signs in while the provider is down
        response = client.post("/login", data={"email": admin.email, "password": PASSWORD})
        assert response.status_code == 302 and client.get("/").status_code == 200
    finally:
        provider.start()

    users = client.get("/admin/users").get_data(as_text=True)
    assert "carla@test.hospital" in users and "OpenID" in users
    page = client.get(f"/admin/users/{carla.id}").get_data(as_text=True)
    assert "OpenID" in page and 'name="password"' not in page
    response = client.post(f"/admin/users/{carla.id}", data={"email": carla.email, "name": carla.name,
                                                             "roles": ["irb_chair"], "is_scientist": "y",
                                                             "is_affiliated": "y", "active": "y",
                                                             "password": "A-long-enough-passphrase-9"})
    assert "no password of this app" in response.get_data(as_text=True)
    session.expire_all()
    assert find_user(session, carla.email).password_hash == ""
    assert roles(session, carla.email) == {"irb_chair", "irb_member"}  # nothing of the refused change was kept


def test_existing_local_account_is_linked_and_keeps_its_password(app, session, factory, provider):
    local = factory.user("submitter", email="sam@test.hospital")
    provider.person("sam-at-idp", email="sam@test.hospital", email_verified=True, groups=["irb-members"])
    assert sign_in(app.test_client(), "sam-at-idp").status_code == 302
    session.expire_all()
    user = find_user(session, local.email)
    assert (user.source, user.oidc_subject) == ("local", "sam-at-idp")
    assert roles(session, user.email) == {"submitter", "irb_member"}  # added, never removed
    assert events(session, "oidc_identity_linked")[-1].payload["subject"] == "sam-at-idp"
    response = app.test_client().post("/login", data={"email": user.email, "password": PASSWORD})
    assert response.status_code == 302
    # another identity at the provider with the same e-mail is refused
    provider.person("impostor", email="sam@test.hospital", email_verified=True, groups=["irb-chairs"])
    client = app.test_client()
    assert sign_in(client, "impostor").headers["Location"] == "/login"
    assert "belongs to another account" in flashed(client)
    assert roles(session, user.email) == {"submitter", "irb_member"}
    # an unverified e-mail never takes over an account
    factory.user("admin", email="root@test.hospital")
    provider.person("mallory", email="root@test.hospital", email_verified=False, groups=["irb-members"])
    assert sign_in(app.test_client(), "mallory").headers["Location"] == "/login"
    assert find_user(session, "root@test.hospital").oidc_subject is None


def test_only_the_provider(tmp_path, database_url, app_overrides):
    app = make_app(tmp_path / "only", database_url, **{**app_overrides, "auth_methods": ("oidc",)})
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    assert f"Sign in with {DISPLAY}" in page and 'name="password"' not in page
    assert client.post("/login", data={"email": "a@test.hospital", "password": PASSWORD}).status_code == 400


def test_without_oidc_there_is_no_button_and_no_route(tmp_path, database_url):
    app = make_app(tmp_path / "local", database_url)
    local = app.test_client()
    assert "Sign in with" not in local.get("/login").get_data(as_text=True)
    assert local.post("/auth/oidc/start").status_code == 404
    assert local.get("/auth/oidc/callback?code=x&state=y").status_code == 404


def test_settings_are_checked(tmp_path, database_url, app_overrides):
    with pytest.raises(ConfigError, match="unknown role"):
        make_app(tmp_path / "a", database_url, **{**app_overrides, "oidc_role_map": {"irb-chairs": ["pope"]}})
    with pytest.raises(ConfigError, match="https"):
        make_app(tmp_path / "b", database_url, **{**app_overrides, "oidc_allow_http_loopback": False})
    with pytest.raises(ConfigError, match="https"):
        make_app(tmp_path / "c", database_url, **{**app_overrides, "oidc_issuer": "http://idp.hospital.example"})
    with pytest.raises(ConfigError, match="oidc_client_id"):
        make_app(tmp_path / "d", database_url, **{**app_overrides, "oidc_client_id": ""})
    with pytest.raises(ConfigError, match="openid"):
        make_app(tmp_path / "e", database_url, **{**app_overrides, "oidc_scopes": ("email",)})
    with pytest.raises(ConfigError, match="maps no claim value"):
        make_app(tmp_path / "f", database_url, **{**app_overrides, "oidc_role_map": {}})
    settings = make_app(tmp_path / "g", database_url, **{**app_overrides, "oidc_issuer": "https://idp.example/realms/x",
                                                         "oidc_allow_http_loopback": False}).config["GOVERNANCE"]
    assert settings.oidc_issuer == "https://idp.example/realms/x"
    assert CLIENT_SECRET not in str(as_public_dict(settings))


def test_id_token_signature_and_claims(app):
    """Tokens signed here (the provider signs only good ones): a foreign key, ``alg: none``, a MAC keyed by the
    client secret, another audience or issuer, an expired token and a missing nonce are each refused."""
    from joserfc import jwt
    from joserfc.jwk import KeySet, OctKey, RSAKey

    settings = app.config["GOVERNANCE"]
    key, stranger = RSAKey.generate_key(2048, parameters={"kid": "k1"}), RSAKey.generate_key(2048, parameters={"kid": "k1"})
    keys = KeySet.import_key_set({"keys": [key.as_dict(private=False)]})
    provider = oidc.Provider(issuer="https://idp.test", authorization_endpoint="https://idp.test/a",
                             token_endpoint="https://idp.test/t", jwks_uri="https://idp.test/k", algorithms=("RS256",))
    now = int(time.time())
    good = {"iss": "https://idp.test", "sub": "u1", "aud": CLIENT_ID, "exp": now + 300, "iat": now, "nonce": "n1",
            "email": "u1@test.hospital", "groups": ["irb-members"]}

    def check(claims=None, signing_key=key, header=None):
        token = jwt.encode(header or {"alg": "RS256", "kid": "k1"}, claims or good, signing_key,
                           algorithms=[(header or {}).get("alg", "RS256")])
        return oidc.validate_id_token(settings, provider, keys, token, nonce="n1", access_token=None, now=now)

    identity = check()
    assert (identity.issuer, identity.subject, identity.values) == ("https://idp.test", "u1", ("irb-members",))
    for claims, words in (({**good, "aud": "someone-else"}, "aud"), ({**good, "iss": "https://evil.test"}, "iss"),
                          ({**good, "exp": now - 3600, "iat": now - 7200}, "expired|exp"),
                          ({**good, "nonce": "n2"}, "nonce"),
                          ({key: value for key, value in good.items() if key != "nonce"}, "nonce")):
        with pytest.raises(oidc.AnswerRefused, match=words):
            check(claims)
    with pytest.raises(oidc.AnswerRefused, match="not valid"):
        check(signing_key=stranger)
    with pytest.raises(oidc.AnswerRefused, match="not valid"):
        check(signing_key=OctKey.import_key(CLIENT_SECRET.encode() * 2), header={"alg": "HS256", "kid": "k1"})
    unsigned = ".".join(part for part in (
        base64url(b'{"alg":"none"}'), base64url(json.dumps(good).encode()))) + "."
    with pytest.raises(oidc.AnswerRefused, match="not valid"):
        oidc.validate_id_token(settings, provider, keys, unsigned, nonce="n1", access_token=None, now=now)


def base64url(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_every_refusal_of_a_provider_sign_in_has_its_own_message():
    """The page says why for each refusal the operation can give (one message per reason, none by a catch-all)."""
    from governance.operations.users import REFUSALS
    from governance.web.auth import REFUSAL_MESSAGES

    assert REFUSAL_MESSAGES.keys() == REFUSALS.keys()
    assert len(set(REFUSAL_MESSAGES.values())) == len(REFUSAL_MESSAGES)
