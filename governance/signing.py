"""Electronic-signature attempts: each failed one is an event, and a session that failed too often can no
longer sign (21 CFR 11.300(d): attempts at unauthorised use are detected and reported).

A "signing session" is the web session (from sign-in) or the API token that carries the signature. The pages
and the API attach one to the request's database session; the ``signature_password_valid`` guard reads it.
The count is kept in the event log, not in the client's cookie, so replaying an older cookie resets nothing.
A refused vote is rolled back, so the record of the failure is written just after the rollback
(:func:`governance.db.after_rollback`), in a transaction of its own.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlmodel import Session

from . import eventlog
from .db import after_rollback
from .models import Event, User

FAILED = "signature_failed"
REFUSED_LOCKED = "signature_refused_locked"
_INFO_KEY = "governance.signing_session"


@dataclass(frozen=True)
class SigningSession:
    #: ``web:<digest of the session id>`` or ``token:<id>``: never the secret itself.
    key: str
    #: When the session began (sign-in, or the token's creation): failures before it do not count.
    since: datetime
    max_failures: int


def session_key(kind: str, secret: str) -> str:
    return f"{kind}:{hashlib.sha256(secret.encode('utf-8')).hexdigest()[:16]}"


def attach(db_session: Session, signing: SigningSession) -> None:
    db_session.info[_INFO_KEY] = signing


def current(db_session: Session) -> SigningSession | None:
    return db_session.info.get(_INFO_KEY)


def failures(db_session: Session, actor: User, signing: SigningSession) -> int:
    """Failed signature passwords by ``actor`` in this signing session."""
    payloads = db_session.execute(select(Event.payload).where(Event.name == FAILED, Event.actor_id == actor.id,
                                                              Event.occurred_at >= signing.since)).scalars()
    return sum(1 for payload in payloads if (payload or {}).get("session") == signing.key)


def record_after_rollback(db_session: Session, name: str, actor: User, *, event: str, submission_id: int | None,
                          deployment_id: int | None, signing: SigningSession | None, attempt: int) -> None:
    """Once the refused change is rolled back, append ``name`` (a failed or locked-out signature) and commit it."""
    actor_id = actor.id
    payload = {"user": actor.email, "event": event, "session": signing.key if signing else "", "attempt": attempt,
               "locked": bool(signing and attempt >= signing.max_failures)}

    def write() -> None:
        try:
            eventlog.append(db_session, name, actor=db_session.get(User, actor_id), submission_id=submission_id,
                            deployment_id=deployment_id, payload=payload)
            db_session.commit()
        except Exception:
            db_session.rollback()
            raise

    after_rollback(db_session, write)
