"""The REST API (JSON under /api/v1) for CI pipelines and other systems.

Bearer tokens (per user, stored hashed, scoped ``read`` or ``submit``, revocable). Errors are JSON with a
message: 401 without a valid token, 403 for a missing scope or role, 404 for unknown or other people's
private cases, 409 when a workflow guard refuses (with its name and reason), 400 for malformed input.
"""

from __future__ import annotations

from flask import Blueprint, Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from ..db import get_session
from ..eventlog import ConcurrentWriteError
from ..operations import ConflictError, GovernanceError, TransitionRefused
from ..operations.tokens import authenticate_token

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


def _routing_errors_in_json(app: Flask) -> None:
    """An unknown path or method under /api/v1 fails in routing, before a blueprint is chosen, so the
    blueprint's handlers never see it and the pages' HTML error would answer; answer it in JSON too."""
    for exc_class in (NotFound, MethodNotAllowed):
        page_handler = app.error_handler_spec[None][exc_class.code].get(exc_class)

        def handle(exc, page_handler=page_handler):
            if request.path == bp.url_prefix or request.path.startswith(bp.url_prefix + "/"):
                return http_error(exc)
            return page_handler(exc) if page_handler is not None else exc

        app.register_error_handler(exc_class, handle)


def init_app(app: Flask) -> None:
    from ..web import csrf
    from . import incidents, routes  # noqa: F401  (they register their endpoints on the blueprint)

    csrf.exempt(bp)
    app.register_blueprint(bp)
    _routing_errors_in_json(app)
