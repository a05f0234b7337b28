"""Sign-in through LDAP with directory groups granting roles, against Debian's real OpenLDAP server (slapd),
started once for this module in a temporary folder on a free loopback port.

- a person in "irb-chairs" signs in through the real /login, gets an account (no password) and the role
  irb_chair; taken out of the group, their next sign-in removes the role (a roles_changed event, no actor,
  source: directory);
- a wrong password, a person in no mapped group and a filter-injection e-mail are refused with the same
  generic message; the refusal is an event without the password;
- the directory stopped: the "unavailable" message, never "wrong password"; a local break-glass admin still
  signs in with ``auth_methods = ("ldap", "local")``.

The packages: ``apt-get install -y slapd ldap-utils`` (``scripts/system-packages.sh test``).
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import select

from governance.config import ConfigError
from governance.errors import GovernanceError
from governance.models import Event, RoleAssignment, User
from governance.operations import directory
from governance.operations.users import authenticate, find_user, is_directory_account, set_password

from .conftest import make_app
from .factories import PASSWORD
from .support.processes import stop as stop_process

ldap3 = pytest.importorskip("ldap3", reason="ldap3 is not installed (pip install 'ldap3>=2.9')")

SLAPD = shutil.which("slapd") or next((p for p in ("/usr/sbin/slapd",) if Path(p).exists()), None)
if SLAPD is None:
    pytest.skip("slapd is not installed: run `apt-get install -y slapd ldap-utils` as root "
                "(or scripts/system-packages.sh test)", allow_module_level=True)

SUFFIX = "dc=hospital,dc=test"
ROOT_DN, ROOT_PW = f"cn=admin,{SUFFIX}", "root-secret-for-seeding"
READER_DN, READER_PW = f"cn=reader,ou=services,{SUFFIX}", "reader-secret-for-lookups"
PEOPLE, GROUPS = f"ou=people,{SUFFIX}", f"ou=groups,{SUFFIX}"
CHAIRS, MEMBERS, CAFETERIA = f"cn=irb-chairs,{GROUPS}", f"cn=irb-members,{GROUPS}", f"cn=cafeteria,{GROUPS}"
PLACEHOLDER = f"cn=placeholder,{PEOPLE}"  # groupOfNames needs one member at least
#: uid -> (mail, name, password, groups)
DIRECTORY_PEOPLE = {
    "chair": ("chair@test.hospital", "Carla Chair", "Chair-Directory-Pass-1", (CHAIRS, MEMBERS)),
    "cook": ("cook@test.hospital", "Colin Cook", "Cook-Directory-Pass-1", (CAFETERIA,)),
    "member": ("member@test.hospital", "Mona Member", "Member-Directory-Pass-1", (MEMBERS,)),
}
GROUP_ROLES = {"irb-chairs": ["irb_chair"], MEMBERS: ["irb_member"]}  # by cn and by DN
WRONG = b"The e-mail or password is not right."
UNAVAILABLE = b"Sign-in through the hospital directory is unavailable right now."


def _dn(uid: str) -> str:
    return f"uid={uid},{PEOPLE}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Slapd:
    """A slapd with an mdb database under ``folder``, listening on loopback."""

    def __init__(self, folder: Path):
        self.folder, self.port, self.process = folder, _free_port(), None
        (folder / "data").mkdir()
        modules = next((p for p in ("/usr/lib/ldap", "/usr/lib/x86_64-linux-gnu/ldap", "/usr/lib/openldap")
                        if Path(p, "back_mdb.so").exists() or Path(p, "back_mdb.la").exists()), None)
        schema = Path("/etc/ldap/schema")
        (folder / "slapd.conf").write_text("\n".join([
            *(f"include {schema / name}" for name in ("core.schema", "cosine.schema", "inetorgperson.schema")),
            f"pidfile {folder / 'slapd.pid'}",
            *([f"modulepath {modules}", "moduleload back_mdb"] if modules else []),
            "database mdb",
            "maxsize 10485760",
            f"suffix \"{SUFFIX}\"",
            f"rootdn \"{ROOT_DN}\"",
            f"rootpw {ROOT_PW}",
            f"directory {folder / 'data'}",
            "access to attrs=userPassword by self write by anonymous auth by * none",
            "access to * by * read",
            "",
        ]), encoding="utf-8")

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.folder / "slapd.log"
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                [SLAPD, "-d", "0", "-f", str(self.folder / "slapd.conf"), "-h", f"{self.url}/"],
                stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"slapd exited: {log.read_text(errors='replace')}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("slapd did not listen within 10 s")

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None

    @contextmanager
    def admin(self):
        """A connection bound as the root DN (to seed and change the directory), closed at the end."""
        conn = ldap3.Connection(ldap3.Server(self.url), ROOT_DN, ROOT_PW, auto_bind=True)
        try:
            yield conn
        finally:
            conn.unbind()


def _seed(conn) -> None:
    def add(dn, classes, attributes):
        assert conn.add(dn, classes, attributes), (dn, conn.result)

    add(SUFFIX, ["dcObject", "organization"], {"dc": "hospital", "o": "Test Hospital"})
    for unit in ("people", "groups", "services"):
        add(f"ou={unit},{SUFFIX}", ["organizationalUnit"], {"ou": unit})
    add(READER_DN, ["organizationalRole", "simpleSecurityObject"], {"cn": "reader", "userPassword": READER_PW})
    add(PLACEHOLDER, ["organizationalRole"], {"cn": "placeholder"})
    members: dict[str, list[str]] = {CHAIRS: [], MEMBERS: [], CAFETERIA: []}
    for uid, (mail, name, password, groups) in DIRECTORY_PEOPLE.items():
        add(_dn(uid), ["inetOrgPerson"], {"uid": uid, "cn": name, "sn": name.split()[-1], "displayName": name,
                                         "mail": mail, "userPassword": password})
        for group in groups:
            members[group].append(_dn(uid))
    for group, dns in members.items():
        add(group, ["groupOfNames"], {"cn": group.split(",")[0][3:], "member": [PLACEHOLDER, *dns]})


@pytest.fixture(scope="module")
def slapd(tmp_path_factory):
    server = Slapd(tmp_path_factory.mktemp("slapd"))
    server.start()
    try:
        with server.admin() as conn:
            _seed(conn)
        yield server
    finally:
        server.stop()


@pytest.fixture
def app_overrides(slapd) -> dict:
    return {"auth_methods": ("ldap", "local"), "ldap_url": slapd.url, "ldap_bind_dn": READER_DN,
            "ldap_bind_password": READER_PW, "ldap_user_base": PEOPLE, "ldap_group_base": GROUPS,
            "ldap_group_member_attribute": "member", "ldap_group_roles": GROUP_ROLES, "ldap_timeout": 2}


def login(client, email: str, password: str):
    return client.post("/login", data={"email": email, "password": password}, follow_redirects=False)


def person(uid: str) -> tuple[str, str]:
    mail, _name, password, _groups = DIRECTORY_PEOPLE[uid]
    return mail, password


def roles(session, mail: str) -> set[str]:
    session.expire_all()
    user = find_user(session, mail)
    return set(session.execute(select(RoleAssignment.role).where(RoleAssignment.user_id == user.id)).scalars())


def events(session, name: str) -> list[Event]:
    session.expire_all()
    return list(session.execute(select(Event).where(Event.name == name).order_by(Event.seq)).scalars())


@pytest.mark.both_databases
def test_group_grants_the_role_and_leaving_the_group_takes_it_away(app, client, session, slapd):
    mail, password = person("chair")
    response = login(client, mail, password)
    assert response.status_code == 302, response.data
    user = find_user(session, mail)
    assert user.name == "Carla Chair" and user.password_hash == ""  # cannot sign in locally
    assert user.source == "ldap" and user.oidc_subject is None
    assert roles(session, mail) == {"irb_chair", "irb_member"}
    assert is_directory_account(session, user)
    created = events(session, "user_created")[-1]
    assert created.actor_id is None and created.payload["source"] == "directory"
    assert created.payload["roles"] == ["irb_chair", "irb_member"] and created.payload["dn"] == _dn("chair")
    assert client.get("/").status_code == 200

    with slapd.admin() as conn:
        assert conn.modify(CHAIRS, {"member": [(ldap3.MODIFY_DELETE, [_dn("chair")])]}), conn.result
        assert conn.modify(_dn("chair"), {"displayName": [(ldap3.MODIFY_REPLACE, ["Carla C. Chair"])]}), conn.result
    try:
        again = app.test_client()
        response = login(again, mail, password)
        assert response.status_code == 302
        assert roles(session, mail) == {"irb_member"}
        changed = events(session, "roles_changed")[-1]
        assert changed.actor_id is None and changed.actor == "system"
        assert changed.payload == {"user": mail, "added": [], "removed": ["irb_chair"], "source": "directory",
                                   "dn": _dn("chair")}
        # the directory's new display name is the account's, and the change is in the log
        assert find_user(session, mail).name == "Carla C. Chair"
        renamed = events(session, "name_changed")[-1]
        assert renamed.actor_id is None and renamed.payload == {"user": mail, "from": "Carla Chair",
                                                                "to": "Carla C. Chair", "source": "directory",
                                                                "dn": _dn("chair")}
        # the first session had the old roles: it ended with the change
        assert client.get("/").status_code == 302 and again.get("/").status_code == 200
        # the same groups again: nothing changes, no event
        count = len(events(session, "roles_changed"))
        assert login(app.test_client(), mail, password).status_code == 302
        assert len(events(session, "roles_changed")) == count
    finally:
        with slapd.admin() as conn:
            conn.modify(CHAIRS, {"member": [(ldap3.MODIFY_ADD, [_dn("chair")])]})
            conn.modify(_dn("chair"), {"displayName": [(ldap3.MODIFY_REPLACE, ["Carla Chair"])]})


def test_directory_account_has_no_local_password(app, client, session):
    mail, password = person("member")
    assert login(client, mail, password).status_code == 302
    session.expire_all()
    assert authenticate(session, mail, password) is None  # the local method alone never matches it
    with pytest.raises(GovernanceError, match="no password of this app"):  # nor can it be given one
        set_password(session, find_user(session, mail), "A-long-enough-passphrase-9", actor=None)


def test_wrong_password_is_the_generic_message_and_throttled(app, client, session):
    mail, _password = person("chair")
    response = login(client, mail, "not-the-password")
    assert response.status_code == 200 and WRONG in response.data and UNAVAILABLE not in response.data
    assert find_user(session, mail) is None  # nobody created
    failed = events(session, "login_failed")[-1]
    assert failed.payload == {"email": mail, "source": "127.0.0.1"}
    for _ in range(4):  # login_max_failures = 5: the same throttling as local passwords
        assert login(client, mail, "not-the-password").status_code == 200
    assert login(client, mail, "not-the-password").status_code == 429


def test_person_in_no_mapped_group_is_refused(app, client, session):
    mail, password = person("cook")
    response = login(client, mail, password)
    assert response.status_code == 200 and WRONG in response.data
    assert find_user(session, mail) is None
    refused = events(session, "login_refused")[-1]
    assert refused.actor_id is None
    assert refused.payload == {"email": mail, "source": "127.0.0.1", "reason": "in no group that grants a role",
                               "directory": "directory", "dn": _dn("cook")}
    assert password not in str(refused.payload)
    assert not events(session, "login_failed")  # the refusal is its own event


def test_filter_injection_signs_nobody_in(app, client, session):
    mail, password = person("chair")
    # a valid e-mail address for the form, and a wildcard for an unescaped filter: mail=*@test.hospital
    response = login(client, "*@test.hospital", password)
    assert response.status_code == 200 and WRONG in response.data
    assert session.execute(select(User)).first() is None
    settings = app.config["GOVERNANCE"]
    assert directory.user_filter(settings, "*)(mail=*") == r"(&(objectClass=inetOrgPerson)(mail=\2a\29\28mail=\2a))"
    for attempt in ("*", "*)(mail=*", "*)(|(mail=*", f"{mail})(mail=*", "chair*"):
        assert directory.lookup(settings, attempt, password).outcome == "unknown", attempt
    assert directory.lookup(settings, mail, "").outcome == "wrong_password"  # no anonymous bind


def test_directory_stopped_says_unavailable_and_break_glass_admin_still_signs_in(app, client, session, factory,
                                                                                 slapd, caplog):
    admin = factory.user("admin", email="breakglass@test.hospital")
    assert login(app.test_client(), admin.email, PASSWORD).status_code == 302  # directory up, not in it: local
    mail, password = person("chair")
    slapd.stop()
    try:
        with caplog.at_level(logging.ERROR, logger="governance.operations.directory"):
            response = login(client, mail, password)
        assert response.status_code == 200
        assert UNAVAILABLE in response.data and WRONG not in response.data
        assert any("unavailable" in r.getMessage() and slapd.url in r.getMessage() for r in caplog.records)
        failed = events(session, "login_failed")[-1]
        assert failed.payload == {"email": mail, "source": "127.0.0.1", "directory": "unavailable"}
        assert password not in str(failed.payload)
        # break glass: the local admin signs in while the directory is down
        assert login(app.test_client(), admin.email, PASSWORD).status_code == 302
    finally:
        slapd.start()
    assert login(app.test_client(), mail, password).status_code == 302


def test_local_account_in_the_directory_keeps_its_other_roles(app, session, factory):
    mail, password = person("member")
    factory.user("submitter", email=mail, password=PASSWORD)
    assert login(app.test_client(), mail, password).status_code == 302  # the directory's password
    session.expire_all()
    user = find_user(session, mail)
    assert not is_directory_account(session, user)
    assert roles(session, mail) == {"submitter", "irb_member"}  # added, never removed
    assert events(session, "roles_changed")[-1].payload["added"] == ["irb_member"]
    assert login(app.test_client(), mail, PASSWORD).status_code == 302  # its local password still works


def test_settings_are_checked(tmp_path, database_url, app_overrides):
    with pytest.raises(ConfigError, match="unknown role"):
        make_app(tmp_path / "a", database_url, **{**app_overrides, "ldap_group_roles": {"irb-chairs": ["pope"]}})
    with pytest.raises(ConfigError, match="ldap_url"):
        make_app(tmp_path / "b", database_url, **{**app_overrides, "ldap_url": ""})
    with pytest.raises(ConfigError, match="ldap_user_filter"):
        make_app(tmp_path / "c", database_url, **{**app_overrides, "ldap_user_filter": "(mail=%s)"})
    default = make_app(tmp_path / "d", database_url).config["GOVERNANCE"]
    assert default.auth_methods == ("local",)
    assert default.ldap_user_filter == "(&(objectClass=inetOrgPerson)(mail={email}))"
