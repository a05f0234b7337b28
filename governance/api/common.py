"""What every API endpoint shares: the blueprint, token authentication, JSON errors, input parsing.

Bearer tokens (per user, stored hashed, scoped ``read`` or ``submit``, revocable). Errors are JSON with a
message: 401 without a valid token, 403 for a missing scope or role, 404 for unknown or other people's
private cases, 409 when a workflow guard refuses (with its name and reason), 400 for malformed input.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, g, jsonify, request
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from ..db import get_session
from ..errors import ConflictError, GovernanceError, NotPermitted, TransitionRefused
from ..eventlog import ConcurrentWriteError
from ..operations.tokens import authenticate_token
from ..permissions import roles_of
from ..schemas import Strict  # noqa: F401  (re-exported to the API modules)
from ..signing import SigningSession, attach
from . import schemas

bp = Blueprint("api", __name__, url_prefix="/api/v1")
PUBLIC = {"api.openapi"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, **extra):
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


def error(status: int, message: str, **extra):
    return jsonify({"error": message, "status": status, **extra}), status


@bp.before_request
def authenticate():
    if request.endpoint in PUBLIC:
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return error(401, "send an API token as 'Authorization: Bearer <token>' (create one on your account page)")
    found = authenticate_token(get_session(), secret.strip())
    if found is None:
        return error(401, "the token is unknown, revoked, or its user is deactivated")
    g.api_user, g.api_token = found
    if g.api_token.scope == "watch" and request.endpoint != "api.post_interactions":
        return error(403, "a watch token posts its deployment's interactions and can do nothing else")
    # A token is its own signing session: after too many wrong signature passwords it can no longer sign.
    attach(get_session(), SigningSession(key=f"token:{g.api_token.id}", since=g.api_token.created_at,
                                         max_failures=current_app.config["GOVERNANCE"].signature_max_failures))
    return None


def require_scope(scope: str) -> None:
    if scope == "submit" and g.api_token.scope != "submit":
        raise ApiError(403, "this token is read-only; a 'submit' token is needed")


@bp.after_request
def commit(response):
    """One commit per request (token last-use times included), only when it succeeded."""
    session = g.get("_db_session")
    if session is not None and response.status_code < 400:
        try:
            session.commit()
        except ConcurrentWriteError:
            session.rollback()
            return error(409, "the database was changed by another request at the same time; retry")[0]
    response.headers.setdefault("Cache-Control", "no-store")
    return response


@bp.errorhandler(ApiError)
def api_error(exc: ApiError):
    get_session().rollback()
    return error(exc.status, exc.message, **exc.extra)


@bp.errorhandler(TransitionRefused)
def refused(exc: TransitionRefused):
    get_session().rollback()
    status = 403 if exc.guard == "roles" else 400 if exc.guard == "fields" else 409
    return error(status, exc.reason, guard=exc.guard, event=exc.event, state=exc.state)


@bp.errorhandler(ConflictError)
def conflict(exc: ConflictError):
    get_session().rollback()
    return error(409, str(exc))


@bp.errorhandler(NotPermitted)
def not_permitted(exc: NotPermitted):
    get_session().rollback()
    return error(403, str(exc))


@bp.errorhandler(IntegrityError)
def integrity(_exc: IntegrityError):
    """A uniqueness or consistency rule the database enforces (two writers raced past the operation's check)."""
    get_session().rollback()
    return error(409, "the database refused the change: it conflicts with a record that already exists; reload "
                      "and try again")


@bp.errorhandler(GovernanceError)
def governance_error(exc: GovernanceError):
    get_session().rollback()
    return error(400, str(exc))


@bp.errorhandler(HTTPException)
def http_error(exc: HTTPException):
    response, status = error(exc.code or 500, exc.description or exc.name)
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response, status


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def parse(model: type[BaseModel]) -> Any:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    if _has_nul(body):  # PostgreSQL text cannot hold NUL characters
        raise ApiError(400, "the request body must not contain NUL (\\u0000) characters")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        message = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
        raise ApiError(400, f"{where}: {message}", field=where) from None


def respond(model: type[BaseModel], data: Any, status: int = 200):
    """A JSON response checked against its documented model (see :mod:`governance.api.schemas`)."""
    return jsonify(schemas.dump(model, data)), status


def int_arg(name: str, default: int, maximum: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name}: an integer is needed", field=name) from None
    if not 1 <= value <= maximum:
        raise ApiError(400, f"{name}: between 1 and {maximum}", field=name)
    return value


def roles() -> frozenset[str]:
    return roles_of(get_session(), g.api_user)


def require_roles(*allowed: str) -> None:
    if not roles() & set(allowed):
        raise ApiError(403, f"only {' or '.join(allowed)} may do this")
