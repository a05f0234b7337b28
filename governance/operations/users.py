"""Accounts, roles and sign-in."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlmodel import Session

from .. import eventlog
from ..domain import Role
from ..models import RoleAssignment, User, utcnow
from ..permissions import forget_roles, roles_of
from ..security import check_password_strength, hash_password, needs_rehash, verify_password
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
        try:
            check_password_strength(password)
        except ValueError as exc:
            raise GovernanceError(str(exc)) from None
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
    session.flush()
    eventlog.append(session, "user_activated" if active else "user_deactivated", actor=actor,
                    payload={"user": user.email})


def set_password(session: Session, user: User, password: str, *, actor: User | None) -> None:
    try:
        check_password_strength(password)
    except ValueError as exc:
        raise GovernanceError(str(exc)) from None
    user.password_hash = hash_password(password)
    session.flush()
    eventlog.append(session, "password_changed", actor=actor, payload={"user": user.email})


def authenticate(session: Session, email: str, password: str, *, max_failures: int, lockout_minutes: int,
                 now: datetime | None = None, source: str = "") -> User | None:
    """The user if the password matches; otherwise record the failure (and lock after repeated ones)."""
    now = now or utcnow()
    user = find_user(session, email)
    if user is not None and user.locked_until is not None and user.locked_until > now:
        eventlog.append(session, "login_refused_locked", actor=None, payload={"email": email.lower(), "source": source})
        return None
    if user is not None and user.active and verify_password(user.password_hash, password):
        if needs_rehash(user.password_hash):
            user.password_hash = hash_password(password)
        user.failed_logins = 0
        user.locked_until = None
        session.flush()
        return user
    payload = {"email": email.strip().lower()[:254], "source": source}
    if user is not None:
        user.failed_logins += 1
        if user.failed_logins >= max_failures:
            user.locked_until = now + timedelta(minutes=lockout_minutes)
            payload["locked_until"] = user.locked_until.isoformat(timespec="seconds")
        session.flush()
    eventlog.append(session, "login_failed", actor=None, payload=payload)
    return None
