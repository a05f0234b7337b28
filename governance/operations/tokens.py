"""API tokens: random, shown once, stored as sha256, scoped (read or submit), revocable."""

from __future__ import annotations

from sqlalchemy import select
from sqlmodel import Session

from .. import eventlog
from ..models import ApiToken, User, utcnow
from ..security import new_api_token, token_digest
from ..errors import GovernanceError


def create_token(session: Session, user: User, *, name: str, scope: str, actor: User | None) -> tuple[ApiToken, str]:
    if scope not in {"read", "submit"}:
        raise GovernanceError("scope is read or submit")
    secret = new_api_token()
    token = ApiToken(user_id=user.id, name=name.strip()[:100] or "token", prefix=secret[:10],
                     token_sha256=token_digest(secret), scope=scope)
    session.add(token)
    session.flush()
    eventlog.append(session, "api_token_created", actor=actor, payload={
        "token": token.id, "user": user.email, "name": token.name, "scope": scope, "prefix": token.prefix})
    return token, secret


def revoke_token(session: Session, token: ApiToken, *, actor: User | None) -> None:
    if token.revoked_at is not None:
        return
    token.revoked_at = utcnow()
    session.flush()
    eventlog.append(session, "api_token_revoked", actor=actor, payload={"token": token.id, "prefix": token.prefix})


def authenticate_token(session: Session, secret: str) -> tuple[User, ApiToken] | None:
    """The token's user if the token exists, is not revoked and the user is active."""
    row = session.execute(select(ApiToken).where(ApiToken.token_sha256 == token_digest(secret))).scalars().first()
    if row is None or row.revoked_at is not None:
        return None
    user = session.get(User, row.user_id)
    if user is None or not user.active:
        return None
    row.last_used_at = utcnow()
    return user, row
