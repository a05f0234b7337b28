"""The web workspace: blueprints, sign-in, CSRF, one commit per request."""

from __future__ import annotations

from flask import Flask, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ..db import get_session
from ..domain import N_
from ..errors import ConflictError, NotPermitted
from ..eventlog import ConcurrentWriteError
from ..extensions import babel, csrf, limiter, login_manager
from ..models import User
from ..notify import unread_count
from ..permissions import roles_of
from .i18n import LOCALE_OF, page_language, select_locale

#: Werkzeug's default error descriptions (an ``abort(404)`` without one), translated on the error page; an
#: ``abort`` with its own description translates it where it is raised.
HTTP_DESCRIPTIONS = frozenset({
    N_("The browser (or proxy) sent a request that this server could not understand."),
    N_("The data value transmitted exceeds the capacity limit."),
    N_("You don't have the permission to access the requested resource. It is either read-protected or not "
       "readable by the server."),
    N_("The requested URL was not found on the server. If you entered the URL manually please check your spelling "
       "and try again."),
    N_("The method is not allowed for the requested URL."),
    N_("A conflict happened while processing the request. The resource might have been modified while the request "
       "was being processed."),
})


def init_app(app: Flask) -> None:
    from . import account, admin, auth, cases, chair, dashboard, deployments, incidents, notifications, registry, review
    from . import documents, sessions

    csrf.init_app(app)
    limiter.init_app(app)
    babel.init_app(app, locale_selector=select_locale, default_translation_directories="translations")
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = None
    login_manager.session_protection = "strong"

    @login_manager.user_loader
    def load_user(user_id: str) -> User | None:
        """The account if it is active and this session is still valid (epoch, idle and absolute timeouts)."""
        user = get_session().get(User, int(user_id)) if user_id.isdigit() else None
        if user is None or not user.active:
            return None
        return sessions.check(user)

    for blueprint in (auth.bp, dashboard.bp, cases.bp, deployments.bp, review.bp, chair.bp, registry.bp, admin.bp,
                      account.bp, incidents.bp, notifications.bp, documents.bp):
        app.register_blueprint(blueprint)

    @app.after_request
    def commit_request(response):
        """The request commits once, at its end, if it changed anything and succeeded."""
        session = g.get("_db_session")
        writes = request.method in {"POST", "PUT", "PATCH", "DELETE"} or getattr(
            app.view_functions.get(request.endpoint or ""), "writes_on_get", False)  # e.g. the OpenID callback
        if session is not None and writes and response.status_code < 400:
            try:
                session.commit()
            except (SQLAlchemyError, ConcurrentWriteError):
                session.rollback()
                return render_template("errors/error.html", code=409,
                                       message=_("Someone else changed this record at the same time. Reload the "
                                                 "page and try again.")), 409
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                    "script-src 'self'; frame-ancestors 'none'; form-action 'self'")
        return response

    @app.errorhandler(CSRFError)
    def csrf_error(error):
        return render_template("errors/error.html", code=400,
                               message=_("The form expired or was not sent from this site (%(reason)s). Reload "
                                         "the page and submit again.", reason=error.description)), 400

    @app.errorhandler(ConflictError)
    def conflict(error):
        get_session().rollback()
        flash(str(error), "error")
        return redirect(request.referrer or url_for("dashboard.index"))

    @app.errorhandler(NotPermitted)
    def not_permitted(error):
        get_session().rollback()
        return render_template("errors/error.html", code=403, message=str(error)), 403

    @app.errorhandler(IntegrityError)
    def integrity(_error):
        """A uniqueness rule the database enforces (a concurrent writer got past the operation's check)."""
        get_session().rollback()
        return render_template("errors/error.html", code=409,
                               message=_("Someone else changed this record at the same time. Reload the page and try "
                                         "again.")), 409

    def http_message(error) -> str:
        return _(error.description) if error.description in HTTP_DESCRIPTIONS else error.description

    @app.errorhandler(429)
    def too_many(_error):
        get_session().rollback()
        return render_template("errors/error.html", code=429, message=sessions.too_many_message()), 429

    for code in (400, 403, 404, 405, 409, 413):
        app.register_error_handler(code, lambda error, code=code: (render_template(
            "errors/error.html", code=code, message=http_message(error)), code))

    @app.context_processor
    def inject():
        signed_in = current_user.is_authenticated
        roles = roles_of(get_session(), current_user) if signed_in else frozenset()
        return {"current_roles": roles, "has_role": lambda *wanted: bool(roles & set(wanted)),
                "settings": app.config["GOVERNANCE"], "lang": page_language(), "locale_of": LOCALE_OF,
                "unread_notifications": (lambda: unread_count(get_session(), current_user)) if signed_in else None}

    from . import filters

    filters.register(app)
