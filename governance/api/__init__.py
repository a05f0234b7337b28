"""The REST API (JSON under /api/v1) for CI pipelines and other systems.

Bearer tokens (per user, stored hashed, scoped ``read`` or ``submit``, revocable). Errors are JSON with a
message: 401 without a valid token, 403 for a missing scope or role, 404 for unknown or other people's
private cases, 409 when a workflow guard refuses (with its name and reason), 400 for malformed input.
The endpoints live in :mod:`.routes`, :mod:`.incidents` and :mod:`.watch`, what they share in :mod:`.common`.
"""

from __future__ import annotations

from flask import Flask, request
from werkzeug.exceptions import BadRequest, MethodNotAllowed, NotFound, RequestEntityTooLarge

from ..extensions import csrf
from . import incidents, routes, watch  # noqa: F401  (they register their endpoints on the blueprint)
from .common import bp, http_error


def _routing_errors_in_json(app: Flask) -> None:
    """An unknown path or method under /api/v1 fails in routing, and a body too large or malformed can fail in
    the app's first request hook; the pages' HTML error (registered by code, so ahead of the blueprint's
    handler) would answer; answer them in JSON too."""
    for exc_class in (NotFound, MethodNotAllowed, BadRequest, RequestEntityTooLarge):
        page_handler = app.error_handler_spec[None][exc_class.code].get(exc_class)

        def handle(exc, page_handler=page_handler):
            if request.path == bp.url_prefix or request.path.startswith(bp.url_prefix + "/"):
                return http_error(exc)
            return page_handler(exc) if page_handler is not None else exc

        app.register_error_handler(exc_class, handle)


def init_app(app: Flask) -> None:
    csrf.exempt(bp)
    app.register_blueprint(bp)
    _routing_errors_in_json(app)
