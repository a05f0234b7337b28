"""Accounts, roles and sign-in."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlmodel import Session

from .. import eventlog
from ..languages import LOCALES
from ..config import Settings
from ..domain import AccountSource, NotificationDelivery, Role
from ..models import RoleAssignment, User
from ..permissions import forget_roles, roles_of
from ..security import check_password_strength, hash_password, needs_rehash, verify_dummy, verify_password
from ..errors import GovernanceError
from . import directory, oidc

log = logging.getLogger(__name__)


def find_user(session: Session, email: str) -> User | None:
    return session.execute(select(User).where(User.email == email.strip().lower())).scalars().first()


def create_user(session: Session, *, email: str, name: str, roles: list[str], password: str | None,
                actor: User | None, is_scientist: bool = True, is_affiliated: bool = True, name_zh: str = "",
                source: dict | None = None, account_source: AccountSource = AccountSource.LOCAL,
                oidc_identity: tuple[str, str] | None = None) -> User:
    """A new account. ``source`` is added to the ``user_created`` event's payload; ``account_source`` says where
    the identity lives (only a local account may have a password); ``oidc_identity`` is the provider's
    ``(iss, sub)`` of an account created by a sign-in through it."""
    email = email.strip().lower()
    if "@" not in email:
        raise GovernanceError(f"'{email}' is not an e-mail address")
    unknown = sorted(set(roles) - {r.value for r in Role})
    if unknown:
        raise GovernanceError(f"unknown role(s) {', '.join(unknown)}; roles are {', '.join(r.value for r in Role)}")
    if find_user(session, email) is not None:
        raise GovernanceError(f"a user with e-mail {email} already exists")
    if password and account_source != AccountSource.LOCAL:
        raise GovernanceError(f"an account from {account_source.value} has no password of this app")
    if password is not None:
        check_password_strength(password, user_inputs=(email, name))
    issuer, subject = oidc_identity or (None, None)
    user = User(email=email, name=name.strip(), name_zh=name_zh, password_hash=hash_password(password) if password else "",
                is_scientist=is_scientist, is_affiliated=is_affiliated, source=account_source.value,
                oidc_issuer=issuer, oidc_subject=subject)
    session.add(user)
    session.flush()
    for role in sorted(set(roles)):
        session.add(RoleAssignment(user_id=user.id, role=role, granted_by_id=actor.id if actor else None))
    session.flush()
    eventlog.append(session, "user_created", actor=actor, payload={
        "user": user.email, "name": user.name, "roles": sorted(set(roles)), "is_scientist": is_scientist,
        "is_affiliated": is_affiliated, **(source or {})})
    return user


def set_roles(session: Session, user: User, roles: list[str], *, actor: User) -> None:
    unknown = sorted(set(roles) - {r.value for r in Role})
    if unknown:
        raise GovernanceError(f"unknown role(s) {', '.join(unknown)}")
    current = set(roles_of(session, user))
    wanted = set(roles)
    for row in session.execute(select(RoleAssignment).where(RoleAssignment.user_id == user.id)).scalars():
        if row.role not in wanted:
            session.delete(row)
    for role in sorted(wanted - current):
        session.add(RoleAssignment(user_id=user.id, role=role, granted_by_id=actor.id))
    _end_sessions(user)
    session.flush()
    forget_roles(user)
    eventlog.append(session, "roles_changed", actor=actor, payload={
        "user": user.email, "added": sorted(wanted - current), "removed": sorted(current - wanted)})


def set_committee_attributes(session: Session, user: User, *, is_scientist: bool, is_affiliated: bool,
                             actor: User) -> None:
    before = {"is_scientist": user.is_scientist, "is_affiliated": user.is_affiliated}
    user.is_scientist, user.is_affiliated = is_scientist, is_affiliated
    session.flush()
    eventlog.append(session, "committee_composition_changed", actor=actor, payload={
        "user": user.email, "before": before, "after": {"is_scientist": is_scientist, "is_affiliated": is_affiliated}})


def set_active(session: Session, user: User, active: bool, *, actor: User) -> None:
    user.active = active
    _end_sessions(user)
    session.flush()
    eventlog.append(session, "user_activated" if active else "user_deactivated", actor=actor,
                    payload={"user": user.email})


def set_password(session: Session, user: User, password: str, *, actor: User | None) -> None:
    """Set a new password (the policy of :func:`check_password_strength`); every session of the account ends
    (the caller may keep the one that made the change by storing the new epoch in it). Only a local account has a
    password of this app: a directory or OpenID account signs in where it comes from."""
    if user.source != AccountSource.LOCAL:
        raise GovernanceError(f"{user.email} signs in through {SOURCE_WORDS.get(user.source, user.source)}; "
                              "it has no password of this app")
    check_password_strength(password, user_inputs=(user.email, user.name))
    user.password_hash = hash_password(password)
    _end_sessions(user)
    session.flush()
    eventlog.append(session, "password_changed", actor=actor, payload={"user": user.email})


#: The languages a person may choose (the interface's locale codes; empty: the browser's, else the instance's).
LANGUAGES = ("", *LOCALES)


def set_language(session: Session, user: User, language: str, *, actor: User | None) -> None:
    """The person's language for pages and e-mails (an event, like every change to an account)."""
    if language not in LANGUAGES:
        raise GovernanceError(f"language must be one of {', '.join(repr(code) for code in LANGUAGES)}")
    if user.language == language:
        return
    before, user.language = user.language, language
    session.flush()
    eventlog.append(session, "language_changed", actor=actor, payload={"user": user.email, "from": before,
                                                                          "to": language})


#: How messages name where an account signs in.
SOURCE_WORDS = {AccountSource.LDAP.value: "the hospital directory", AccountSource.OIDC.value: "the OpenID provider"}


def set_notification_delivery(session: Session, user: User, delivery: str, *, actor: User | None) -> None:
    """How the person gets the e-mails of their notifications: one each, or a daily digest (an event)."""
    choices = [d.value for d in NotificationDelivery]
    if delivery not in choices:
        raise GovernanceError(f"delivery must be one of {', '.join(choices)}")
    if user.notification_delivery == delivery:
        return
    before, user.notification_delivery = user.notification_delivery, delivery
    session.flush()
    eventlog.append(session, "notification_delivery_changed", actor=actor, payload={
        "user": user.email, "from": before, "to": delivery})


def _end_sessions(user: User) -> None:
    """Refuse every web session begun before now (the caller writes the event that says why)."""
    user.session_epoch = (user.session_epoch or 0) + 1


def sign_out(session: Session, user: User, *, source: str = "") -> None:
    """End every web session of ``user``: a cookie captured before is refused from now on."""
    _end_sessions(user)
    session.flush()
    eventlog.append(session, "signed_out", actor=user, payload={"user": user.email, "source": source})


def authenticate(session: Session, email: str, password: str, *, now: datetime | None = None,
                 source: str = "", settings: Settings | None = None) -> User | None:
    """The user if the password matches and the account is active; otherwise record the failure.

    The methods of ``settings.auth_methods`` are tried in order (only ``local`` without settings): ``local``
    checks the account's own hash, ``ldap`` the directory (:func:`directory_sign_in`). When no method signs the
    person in and the directory could not be asked, :class:`~governance.operations.directory.DirectoryUnavailable`
    is raised after the failure is recorded: an outage is never reported as a wrong password.

    The local check verifies one argon2 hash (a dummy one for an unknown, disabled or password-less account), so
    the answer takes the same time whether the e-mail exists or not. Nothing is locked here: guessing is slowed by
    throttling per account and source address (the web layer), which nobody can use to lock out someone else.
    """
    methods = settings.auth_methods if settings is not None else ("local",)
    unavailable: directory.DirectoryUnavailable | None = None
    refused = False
    for method in methods:
        if method == "oidc":  # not a password: the provider's button
            continue
        if method == "ldap":
            try:
                user, refused_here = directory_sign_in(session, settings, email, password, now=now, source=source)
            except directory.DirectoryUnavailable as exc:
                unavailable = exc
                continue
            refused = refused or refused_here
        else:
            user = _local_password(session, email, password)
        if user is not None:
            return user
    user = find_user(session, email)
    if user is not None:
        user.failed_logins += 1
        session.flush()
    if not refused:  # a refusal wrote its own event
        payload = {"email": email.strip().lower()[:254], "source": source}
        if unavailable is not None:
            payload["directory"] = "unavailable"
        eventlog.append(session, "login_failed", actor=None, payload=payload, occurred_at=now)
    if unavailable is not None:
        raise unavailable
    return None


def _local_password(session: Session, email: str, password: str) -> User | None:
    user = find_user(session, email)
    if user is not None and user.active and user.password_hash:
        matched = verify_password(user.password_hash, password)
    else:
        matched = verify_dummy(password)
    if matched and user is not None:
        if needs_rehash(user.password_hash):
            user.password_hash = hash_password(password)
        user.failed_logins = 0
        user.locked_until = None
        session.flush()
        return user
    return None


# --- sign-in through the directory (LDAP / Active Directory) -------------------------------------------------

def is_directory_account(session: Session, user: User) -> bool:
    """Whether the account was created by a sign-in through the directory (``source`` is ``ldap``).

    Only such accounts have their roles set to exactly the directory's: roles of a local account that also
    signs in through the directory are added to, never removed."""
    return user.source == AccountSource.LDAP


def directory_sign_in(session: Session, settings: Settings, email: str, password: str, *,
                      now: datetime | None = None, source: str = "") -> tuple[User | None, bool]:
    """Sign in through the directory: ``(user, False)`` on success; ``(None, False)`` when the directory does not
    know the e-mail or the password is wrong (the caller records the failure); ``(None, True)`` when the person
    is refused (in no mapped group, or a deactivated account), with a ``login_refused`` event written here.

    On success the account is created on first sign-in (no password: it cannot sign in locally) or its name is
    updated, and its roles are synced with the directory's groups (:func:`sync_directory_roles`).
    Raises :class:`~governance.operations.directory.DirectoryUnavailable` when the directory cannot be asked.
    """
    email = email.strip().lower()
    answer = directory.lookup(settings, email, password)
    if answer.outcome != "ok":
        return None, False
    roles = directory.roles_for(settings, answer.groups)
    user = find_user(session, email)
    if user is not None and not user.active:
        _refuse(session, email, source, now, "account deactivated", answer.dn)
        return None, True
    if not roles:
        if user is not None and is_directory_account(session, user):
            sync_directory_roles(session, user, set(), dn=answer.dn)
        _refuse(session, email, source, now, "in no group that grants a role", answer.dn)
        return None, True
    if user is None:
        user = create_user(session, email=email, name=(answer.name or email)[:200], roles=sorted(roles), password=None,
                           actor=None, source={"source": directory.SOURCE, "dn": answer.dn},
                           account_source=AccountSource.LDAP)
    else:
        _follow_name(session, user, answer.name, {"source": directory.SOURCE, "dn": answer.dn}, now)
        sync_directory_roles(session, user, roles, dn=answer.dn, remove=is_directory_account(session, user))
    user.failed_logins = 0
    user.locked_until = None
    session.flush()
    return user, False


def sync_directory_roles(session: Session, user: User, roles: set[str], *, dn: str, remove: bool = True) -> None:
    """Give ``user`` the roles the directory grants; with ``remove``, take away every other role. A change ends the
    account's other sessions and is a ``roles_changed`` event with no actor and ``source: directory``."""
    _sync_roles(session, user, roles, remove=remove, provenance={"source": directory.SOURCE, "dn": dn})


def _sync_roles(session: Session, user: User, roles: set[str], *, remove: bool, provenance: dict) -> None:
    """Roles granted by where the person signed in (``provenance`` names it in the ``roles_changed`` event)."""
    rows = list(session.execute(select(RoleAssignment).where(RoleAssignment.user_id == user.id)).scalars())
    current = {row.role for row in rows}
    added = sorted(roles - current)
    removed = sorted(current - roles) if remove else []
    if not added and not removed:
        return
    for row in rows:
        if row.role in removed:
            session.delete(row)
    for role in added:
        session.add(RoleAssignment(user_id=user.id, role=role, granted_by_id=None))
    _end_sessions(user)
    session.flush()
    forget_roles(user)
    eventlog.append(session, "roles_changed", actor=None, payload={
        "user": user.email, "added": added, "removed": removed, **provenance})


def _follow_name(session: Session, user: User, name: str | None, provenance: dict, now: datetime | None) -> None:
    """The name the directory or the provider gives the person, when it differs: a ``name_changed`` event with no
    actor, naming where it came from (the name is printed on votes and minutes)."""
    name = (name or "")[:200]
    if not name or name == user.name:
        return
    before, user.name = user.name, name
    session.flush()
    eventlog.append(session, "name_changed", actor=None, occurred_at=now, payload={
        "user": user.email, "from": before, "to": name, **provenance})


def _refuse(session: Session, email: str, source: str, now: datetime | None, reason: str, dn: str) -> None:
    log.info("sign-in through the directory refused for %s: %s", email, reason)
    eventlog.append(session, "login_refused", actor=None, occurred_at=now, payload={
        "email": email[:254], "source": source, "reason": reason, "directory": directory.SOURCE, "dn": dn})


# --- sign-in through the OpenID provider (OpenID Connect) -------------------------------------------------------

class SignInRefused(GovernanceError):
    """The provider vouched for the person but they may not sign in here; ``reason`` is one of
    :data:`REFUSALS` (the page says it in the person's language; the ``login_refused`` event is written)."""

    def __init__(self, reason: str):
        super().__init__(REFUSALS[reason])
        self.reason = reason


#: Why a person the provider vouched for is refused, as the ``login_refused`` event says it.
REFUSALS = {
    "no_role": "no value of the roles claim grants a role",
    "deactivated": "account deactivated",
    "no_email": "the provider sent no e-mail address",
    "email_unverified": "the provider has not verified the e-mail address of an existing account",
    "email_taken": "the e-mail address belongs to an account of another OpenID identity",
}


def oidc_sign_in(session: Session, settings: Settings, identity: oidc.Identity, *, now: datetime | None = None,
                 source: str = "") -> User:
    """The account of the person the provider vouched for, created on first sign-in, with its roles synced.

    The account is found by the provider's ``(iss, sub)``, never by the e-mail alone: a first sign-in with the
    e-mail of an existing account that has no OpenID identity links it (only if the provider has not said the
    e-mail is unverified); that account keeps its source (a local one keeps its password and gets mapped roles
    added, none removed), like a local account signing in through the directory. An account created here has
    ``source`` ``oidc``, no password, and exactly the mapped roles at every sign-in (``roles_changed`` events with
    no actor and ``source: oidc``). The name follows the provider; the e-mail does not change (it names the person
    in the event log). Raises :class:`SignInRefused` after writing a ``login_refused`` event.
    """
    roles = oidc.roles_for(settings, identity.values)
    provenance = {"source": AccountSource.OIDC.value, "issuer": identity.issuer, "subject": identity.subject}
    user = session.execute(select(User).where(User.oidc_issuer == identity.issuer,
                                              User.oidc_subject == identity.subject)).scalars().first()
    email = identity.email.strip().lower()

    def refuse(reason: str) -> SignInRefused:
        log.info("sign-in through the OpenID provider refused for %s: %s", email or identity.subject, REFUSALS[reason])
        eventlog.append(session, "login_refused", actor=None, occurred_at=now, payload={
            "email": (user.email if user is not None else email)[:254], "source": source,
            "reason": REFUSALS[reason], "provider": identity.issuer, "subject": identity.subject})
        return SignInRefused(reason)

    if user is None:
        if "@" not in email:
            raise refuse("no_email")
        user = find_user(session, email)
        if user is not None:
            if user.oidc_subject is not None:
                raise refuse("email_taken")
            if identity.email_verified is False:
                raise refuse("email_unverified")
    if user is not None and not user.active:
        raise refuse("deactivated")
    if not roles:
        if user is not None and user.source == AccountSource.OIDC:
            _sync_roles(session, user, set(), remove=True, provenance=provenance)
        raise refuse("no_role")
    if user is None:
        return create_user(session, email=email, name=(identity.name or email)[:200], roles=sorted(roles),
                           password=None, actor=None, source=provenance, account_source=AccountSource.OIDC,
                           oidc_identity=(identity.issuer, identity.subject))
    if user.oidc_subject is None:
        user.oidc_issuer, user.oidc_subject = identity.issuer, identity.subject
        session.flush()
        eventlog.append(session, "oidc_identity_linked", actor=None, occurred_at=now,
                        payload={"user": user.email, **provenance})
    _follow_name(session, user, identity.name, provenance, now)
    _sync_roles(session, user, roles, remove=user.source == AccountSource.OIDC, provenance=provenance)
    user.failed_logins = 0
    user.locked_until = None
    session.flush()
    return user
