"""The web application: settings, then the system every process assembles, then the pages and the API."""

from __future__ import annotations

import secrets
from typing import Any

from flask import Flask

from . import api, db, system, web
from .config import load_settings, resolve_instance_path
from .operations.engine import registry_problems


def create_app(test_config: dict[str, Any] | None = None, *, require_secret: bool = True) -> Flask:
    """Build the app. ``test_config`` keys in lower case are settings, upper-case ones Flask config.

    ``require_secret`` is False only for CLI commands that must work before ``govern init`` wrote a key;
    serving the web app always checks it.
    """
    test_config = dict(test_config or {})
    instance = resolve_instance_path(test_config.pop("instance_path", None))
    flask_config = {k: v for k, v in test_config.items() if k.isupper()}
    overrides = {k: v for k, v in test_config.items() if not k.isupper()}
    settings = load_settings(instance, overrides)
    if require_secret:
        settings.require_secure_secret()
    problems = registry_problems()
    if problems:
        raise RuntimeError("workflow table names unregistered guards or effects: " + "; ".join(problems))
    system.assemble()

    app = Flask("governance", instance_path=str(instance), template_folder="web/templates", static_folder="static")
    app.url_map.converters["id"] = db.RowIdConverter
    app.config.update(
        SECRET_KEY=settings.secret_key.get_secret_value() if not settings.secret_is_insecure else secrets.token_urlsafe(32),
        GOVERNANCE=settings,
        DEBUG=settings.debug,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.session_cookie_secure,
        MAX_CONTENT_LENGTH=16 * 1024 * 1024,
        WTF_CSRF_TIME_LIMIT=None,
    )
    app.config.update(flask_config)

    db.init_app(app)
    web.init_app(app)
    api.init_app(app)
    return app
