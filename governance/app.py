"""The web application: settings, then the system every process assembles, then the pages and the API."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from . import db
from .config import load_settings, resolve_instance_path


def create_app(test_config: dict[str, Any] | None = None, *, require_secret: bool = True) -> Flask:
    """Build the app. ``test_config`` keys in lower case are settings, upper-case ones Flask config.

    ``require_secret`` is False only for CLI commands that must work before ``govern init`` wrote a key;
    serving the web app always checks it.
    """
    from . import api, inputs, system, web
    from .operations.engine import registry_problems

    problems = registry_problems()
    if problems:
        raise RuntimeError("workflow table names unregistered guards or effects: " + "; ".join(problems))
    system.assemble()
    app = create_core_app(test_config, require_secret=require_secret)
    inputs.init_app(app)
    web.init_app(app)
    api.init_app(app)
    return app


def create_core_app(test_config: dict[str, Any] | None = None, *, require_secret: bool = True) -> Flask:
    """The settings and the database, without the job system, the pages and the API: the app of the commands that
    read the event log and the instance (``govern log``), whose start-up then costs what they check rather than a
    second of imports they never use. ``test_config`` and ``require_secret`` as for :func:`create_app`."""
    test_config = dict(test_config or {})
    instance = resolve_instance_path(test_config.pop("instance_path", None))
    flask_config = {k: v for k, v in test_config.items() if k.isupper()}
    overrides = {k: v for k, v in test_config.items() if not k.isupper()}
    settings = load_settings(instance, overrides)
    if require_secret:
        settings.require_secure_secret()
    app = Flask("governance", instance_path=str(instance), template_folder="web/templates", static_folder="static")
    app.url_map.converters["id"] = db.RowIdConverter
    app.config.update(
        SECRET_KEY=settings.secret_key.get_secret_value() if not settings.secret_is_insecure else secrets.token_urlsafe(32),
        GOVERNANCE=settings,
        DEBUG=settings.debug,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.session_cookie_secure,
        # The signed cookie is refused by Flask past this age too (the session's own clocks end it sooner).
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.session_absolute_hours),
        MAX_CONTENT_LENGTH=settings.max_request_bytes,
        WTF_CSRF_TIME_LIMIT=None,
        # Sign-in throttling: shared by every web process through Redis when a Redis broker is configured.
        RATELIMIT_STORAGE_URI=(settings.broker_url if settings.broker_url.startswith(("redis://", "rediss://"))
                               else "memory://"),
    )
    app.config.update(flask_config)
    if settings.proxy_hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_hops, x_proto=settings.proxy_hops,
                                x_host=settings.proxy_hops)

    db.init_app(app)
    return app
