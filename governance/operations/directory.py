"""The LDAP / Active Directory client of sign-in (``auth_methods`` naming ``ldap``; see ``docs/sign-in.md``).

One sign-in is: bind as the service account (``ldap_bind_dn``) and search ``ldap_user_base`` for the one entry
``ldap_user_filter`` names, with the e-mail escaped (RFC 4515: no filter injection); bind as that entry's DN with
the password typed in (a refused bind is a wrong password); then search ``ldap_group_base`` for the groups whose
``ldap_group_member_attribute`` lists the DN. :func:`roles_for` turns those groups into roles through
``ldap_group_roles``. Accounts and role changes are written by :mod:`governance.operations.users`.

``ldap3`` is imported only here and only when the directory is asked, so processes that never sign anyone in
through it (``govern --help``, workers) do not load it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ..config import ConfigError, Settings
from ..domain import Role
from ..errors import GovernanceError

if TYPE_CHECKING:  # pragma: no cover
    from ldap3 import Connection, Server

log = logging.getLogger(__name__)

#: Where the account's source is written (the ``user_created`` event's payload) and how role-change events
#: made by the directory are told apart from an administrator's.
SOURCE = "directory"


class DirectoryUnavailable(GovernanceError):
    """The directory could not be asked (unreachable, timed out, or the service account was refused): never a
    wrong password."""


@dataclass(frozen=True)
class Group:
    """One directory group: its DN and its cn (either may be named in ``ldap_group_roles``)."""

    dn: str
    cn: str


@dataclass(frozen=True)
class Answer:
    """What the directory said about one e-mail and password.

    ``outcome``: ``unknown`` (no entry, or several: the filter must name one person), ``wrong_password`` (the
    entry's bind was refused) or ``ok`` (the password is right; ``groups`` are the person's groups).
    """

    outcome: Literal["unknown", "wrong_password", "ok"]
    dn: str = ""
    name: str = ""
    groups: tuple[Group, ...] = field(default_factory=tuple)


def check_settings(settings: Settings) -> None:
    """Stop the app at start when ``ldap_group_roles`` maps a group to a role that does not exist."""
    known = {role.value for role in Role}
    for group, roles in settings.ldap_group_roles.items():
        unknown = sorted(set(roles) - known)
        if unknown:
            raise ConfigError(f"setting 'ldap_group_roles': group '{group}' maps to unknown role(s) "
                              f"{', '.join(unknown)}; roles are {', '.join(sorted(known))}")


def user_filter(settings: Settings, email: str) -> str:
    """``ldap_user_filter`` with ``{email}`` replaced by the e-mail, escaped (``*``, ``(``, ``)``, ``\\``, NUL)."""
    from ldap3.utils.conv import escape_filter_chars

    return settings.ldap_user_filter.replace("{email}", escape_filter_chars(email))


def _normal_dn(dn: str) -> str:
    """A DN compared the way a directory does for the common cases: case and spaces around separators ignored."""
    try:
        from ldap3.utils.dn import safe_dn

        return safe_dn(dn).lower()
    except Exception:  # not a DN: a cn, compared as typed
        return dn.strip().lower()


def roles_for(settings: Settings, groups: tuple[Group, ...] | list[Group]) -> set[str]:
    """The roles ``ldap_group_roles`` grants to members of ``groups`` (a key matches a group's DN or its cn)."""
    by_dn = {_normal_dn(group.dn): group for group in groups}
    by_cn = {group.cn.strip().lower() for group in groups if group.cn}
    roles: set[str] = set()
    for key, granted in settings.ldap_group_roles.items():
        if ("=" in key and _normal_dn(key) in by_dn) or key.strip().lower() in by_cn:
            roles.update(granted)
    return roles


def _server(settings: Settings) -> Server:
    import ssl

    from ldap3 import Server, Tls

    tls = None
    if settings.ldap_url.startswith("ldaps://") or settings.ldap_start_tls:
        tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=settings.ldap_ca_file or None)
    return Server(settings.ldap_url, use_ssl=settings.ldap_url.startswith("ldaps://"), tls=tls,
                  connect_timeout=settings.ldap_timeout, get_info="NO_INFO")


def _connection(settings: Settings, server: Server, user: str, password: str) -> Connection:
    from ldap3 import Connection

    connection = Connection(server, user=user or None, password=password or None, read_only=True,
                            receive_timeout=max(1, math.ceil(settings.ldap_timeout)), raise_exceptions=False, auto_referrals=False)
    try:
        connection.open()
    except Exception:
        if connection.socket is not None:  # ldap3 leaves the socket of a refused connect open
            connection.socket.close()
        raise
    if settings.ldap_start_tls and not settings.ldap_url.startswith("ldaps://"):
        if not connection.start_tls():
            _close(connection)
            raise DirectoryUnavailable(f"StartTLS with {settings.ldap_url} failed: {connection.result}")
    return connection


def _first(attributes: dict[str, Any], *names: str) -> str:
    for name in names:
        value = attributes.get(name)
        if isinstance(value, (list, tuple)):
            value = value[0] if value else ""
        if value:
            return str(value)
    return ""


def lookup(settings: Settings, email: str, password: str) -> Answer:
    """Ask the directory whether ``password`` is ``email``'s, and for their groups.

    Raises :class:`DirectoryUnavailable` (after logging why) when the directory cannot be asked.
    """
    from ldap3 import SUBTREE
    from ldap3.core.exceptions import LDAPException

    if not password:  # a simple bind with an empty password is an anonymous bind, which "succeeds"
        return Answer("wrong_password")
    server = _server(settings)
    service = None
    try:
        service = _connection(settings, server, settings.ldap_bind_dn, settings.ldap_bind_password.get_secret_value())
        if settings.ldap_bind_dn and not service.bind():
            raise DirectoryUnavailable(f"the service account {settings.ldap_bind_dn} was refused by "
                                       f"{settings.ldap_url}: {service.result.get('description')}")
        if not service.search(settings.ldap_user_base, user_filter(settings, email), search_scope=SUBTREE,
                              attributes=["cn", "displayName"], size_limit=2):
            if service.result.get("result") not in (0, 4, 32):  # success, size limit exceeded, no such object
                raise DirectoryUnavailable(f"searching {settings.ldap_user_base} on {settings.ldap_url} failed: "
                                           f"{service.result.get('description')} {service.result.get('message')}")
        entries = [entry for entry in service.response or [] if entry.get("type") == "searchResEntry"]
        if len(entries) != 1:
            if len(entries) > 1:
                log.warning("ldap_user_filter matches several entries for %r; nobody is signed in", email)
            return Answer("unknown")
        dn = entries[0]["dn"]
        name = _first(entries[0].get("attributes", {}), "displayName", "cn")

        person = _connection(settings, server, dn, password)
        try:
            if not person.bind():
                if person.result.get("result") == 49:  # invalidCredentials
                    return Answer("wrong_password", dn=dn)
                raise DirectoryUnavailable(f"binding as {dn} on {settings.ldap_url} failed: "
                                           f"{person.result.get('description')} {person.result.get('message')}")
        finally:
            _close(person)

        from ldap3.utils.conv import escape_filter_chars

        member_filter = f"({settings.ldap_group_member_attribute}={escape_filter_chars(dn)})"
        if not service.search(settings.ldap_group_base, member_filter, search_scope=SUBTREE, attributes=["cn"]):
            if service.result.get("result") not in (0, 32):
                raise DirectoryUnavailable(f"searching groups under {settings.ldap_group_base} on "
                                           f"{settings.ldap_url} failed: {service.result.get('description')}")
        groups = tuple(Group(dn=entry["dn"], cn=_first(entry.get("attributes", {}), "cn"))
                       for entry in service.response or [] if entry.get("type") == "searchResEntry")
        return Answer("ok", dn=dn, name=name, groups=groups)
    except DirectoryUnavailable as exc:
        log.error("sign-in through the directory is unavailable: %s", exc)
        raise
    except (LDAPException, OSError) as exc:
        message = f"the directory {settings.ldap_url} cannot be reached: {type(exc).__name__}: {exc}"
        log.error("sign-in through the directory is unavailable: %s", message)
        raise DirectoryUnavailable(message) from None
    finally:
        if service is not None:
            _close(service)


def _close(connection: Connection) -> None:
    try:
        connection.unbind()
    except Exception:  # a connection the server already dropped
        pass
