"""Web sessions that end (issue 12; ASVS 3.3; 21 CFR 11.200 automatic logoff), and sign-in throttling.

The session cookie (Flask's, signed, HttpOnly, SameSite=Lax, Secure with ``session_cookie_secure``) carries:
the account's ``session_epoch`` at sign-in, the sign-in time, the last-seen time and a random session id.
Every request that loads the user checks them: a different epoch (the account signed out, changed its
password or roles, or was deactivated since), more than ``session_idle_minutes`` since the last request or
more than ``session_absolute_hours`` since sign-in signs the session out. The epoch lives in the database,
so a cookie copied before sign-out is refused after it.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import UTC, datetime

from flask import current_app, flash, g, request, session
from flask_babel import gettext as _

from ..db import get_session
from ..models import User
from ..signing import SigningSession, attach, session_key

KEYS = ("epoch", "auth_at", "seen_at", "sid")
#: The last-seen time is rewritten at most this often (each rewrite is a new Set-Cookie).
SEEN_RESOLUTION_S = 60


def now() -> float:
    """The clock sessions are timed by (tests move it)."""
    return time.time()


def begin(user: User) -> None:
    """Called right after ``login_user``: bind the session to the account's epoch and start its clocks."""
    moment = int(now())
    session.update(epoch=user.session_epoch, auth_at=moment, seen_at=moment, sid=secrets.token_urlsafe(16))


def keep_current(user: User) -> None:
    """After the signed-in user changed their own password (or an admin their own roles): every other session
    ended with the epoch bump; this one goes on with the new epoch."""
    if session.get("_user_id") == str(user.id):
        session["epoch"] = user.session_epoch


def check(user: User) -> User | None:
    """The user if the session is still valid, else None (the session is cleared and told why)."""
    settings = current_app.config["GOVERNANCE"]
    moment = now()
    auth_at, seen_at = session.get("auth_at"), session.get("seen_at")
    if session.get("epoch") != user.session_epoch or not isinstance(auth_at, int) or not isinstance(seen_at, int):
        return _end(_("You were signed out (signed out elsewhere, or the password or roles of the account "
                      "changed). Sign in again."))
    if moment - auth_at > settings.session_absolute_hours * 3600:
        return _end(_("Your session ended %(hours)d hours after sign-in. Sign in again.",
                      hours=settings.session_absolute_hours))
    if moment - seen_at > settings.session_idle_minutes * 60:
        return _end(_("Your session ended after %(minutes)d minutes without activity. Sign in again.",
                      minutes=settings.session_idle_minutes))
    if moment - seen_at >= SEEN_RESOLUTION_S:
        session["seen_at"] = int(moment)
    attach(get_session(), SigningSession(key=session_key("web", str(session.get("sid", ""))),
                                         since=datetime.fromtimestamp(auth_at, UTC),
                                         max_failures=settings.signature_max_failures))
    return user


def _end(message: str) -> None:
    session.clear()
    flash(message, "error")
    return None


# --- throttling ---------------------------------------------------------------------------------

def address() -> str:
    return request.remote_addr or "unknown"


def account_and_address() -> str:
    """The key of the tight limit: one account from one address (another address is not affected)."""
    email = (request.form.get("email") or "").strip().lower()
    if not email and session.get("_user_id"):
        email = f"user:{session['_user_id']}"
    return f"{address()}|{hashlib.sha256(email.encode('utf-8')).hexdigest()[:24]}"


def pair_limit() -> str:
    settings = current_app.config["GOVERNANCE"]
    return f"{settings.login_max_failures} per {settings.login_lockout_minutes} minutes"


def address_limit() -> str:
    settings = current_app.config["GOVERNANCE"]
    return f"{settings.login_max_failures_per_address} per {settings.login_lockout_minutes} minutes"


def failed_attempt(_response) -> bool:
    """Only failed password checks count toward the limits (a correct sign-in costs nothing)."""
    return bool(g.get("password_check_failed"))


def note_failed_attempt() -> None:
    g.password_check_failed = True


def too_many_message() -> str:
    return _("Too many wrong passwords from your address for this account. Wait up to %(minutes)d minutes and "
             "try again; sign-in from other addresses is not affected.",
             minutes=current_app.config["GOVERNANCE"].login_lockout_minutes)
