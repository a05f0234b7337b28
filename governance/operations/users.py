"""Accounts, roles and sign-in."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlmodel import Session

from .. import eventlog
from ..domain import Role
from ..models import RoleAssignment, User
from ..permissions import forget_roles, roles_of
from ..security import check_password_strength, hash_password, needs_rehash, verify_dummy, verify_password
from ..errors import GovernanceError


def find_user(session: Session, email: str) -> User | None:
    return session.execute(select(User).where(User.email == email.strip().lower())).scalars().first()


def create_user(session: Session, *, email: str, name: str, roles: list[str], password: str | None,
                actor: User | None, is_scientist: bool = True, is_affiliated: bool = True, name_zh: str = "") -> User:
    email = email.strip().lower()
    if "@" not in email:
        raise GovernanceError(f"'{email}' is not an e-mail address")
    unknown = sorted(set(roles) - {r.value for r in Role})
    if unknown:
        raise GovernanceError(f"unknown role(s) {', '.join(unknown)}; roles are {', '.join(r.value for r in Role)}")
    if find_user(session, email) is not None:
        raise GovernanceError(f"a user with e-mail {email} already exists")
    if password is not None:
        check_password_strength(password, user_inputs=(email, name))
    user = User(email=email, name=name.strip(), name_zh=name_zh, password_hash=hash_password(password) if password else "",
                is_scientist=is_scientist, is_affiliated=is_affiliated)
    session.add(user)
    session.flush()
    for role in sorted(set(roles)):
        session.add(RoleAssignment(user_id=user.id, role=role, granted_by_id=actor.id if actor else None))
    session.flush()
    eventlog.append(session, "user_created", actor=actor, payload={
        "user": user.email, "name": user.name, "roles": sorted(set(roles)), "is_scientist": is_scientist,
        "is_affiliated": is_affiliated})
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
    (the caller may keep the one that made the change by storing the new epoch in it)."""
    check_password_strength(password, user_inputs=(user.email, user.name))
    user.password_hash = hash_password(password)
    _end_sessions(user)
    session.flush()
    eventlog.append(session, "password_changed", actor=actor, payload={"user": user.email})


def _end_sessions(user: User) -> None:
    """Refuse every web session begun before now (the caller writes the event that says why)."""
    user.session_epoch = (user.session_epoch or 0) + 1


def sign_out(session: Session, user: User, *, source: str = "") -> None:
    """End every web session of ``user``: a cookie captured before is refused from now on."""
    _end_sessions(user)
    session.flush()
    eventlog.append(session, "signed_out", actor=user, payload={"user": user.email, "source": source})


def authenticate(session: Session, email: str, password: str, *, now: datetime | None = None,
                 source: str = "") -> User | None:
    """The user if the password matches and the account is active; otherwise record the failure.

    Every path verifies one argon2 hash (a dummy one for an unknown, disabled or password-less account), so the
    answer takes the same time whether the e-mail exists or not. Nothing is locked here: guessing is slowed by
    throttling per account and source address (the web layer), which nobody can use to lock out someone else.
    """
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
    payload = {"email": email.strip().lower()[:254], "source": source}
    if user is not None:
        user.failed_logins += 1
        session.flush()
    eventlog.append(session, "login_failed", actor=None, payload=payload, occurred_at=now)
    return None
