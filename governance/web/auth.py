"""Sign-in and sign-out."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user

from ..db import get_session
from ..extensions import limiter
from ..operations.directory import DirectoryUnavailable, check_settings
from ..operations.users import authenticate, sign_out
from . import sessions
from .access import me
from .forms import ConfirmForm, LoginForm
from .i18n import LOCALES

bp = Blueprint("auth", __name__)


@bp.record_once
def _check_directory_settings(state) -> None:
    """Stop at start when ``ldap_group_roles`` names a role that does not exist (config cannot know the roles)."""
    check_settings(state.app.config["GOVERNANCE"])


def _safe_next(target: str | None) -> str:
    if not target:
        return url_for("dashboard.index")
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc and target.startswith("/") else url_for("dashboard.index")


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(sessions.pair_limit, key_func=sessions.account_and_address, methods=["POST"], scope="login-account",
               deduct_when=sessions.failed_attempt)
@limiter.limit(sessions.address_limit, key_func=sessions.address, methods=["POST"], scope="login-address",
               deduct_when=sessions.failed_attempt)
def login():
    """Sign in. Wrong passwords are throttled per account and address, and per address (429 with a message
    once over), never locked per account: nobody can lock another person out."""
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.index"))
    form = LoginForm()
    if form.validate_on_submit():
        settings = current_app.config["GOVERNANCE"]
        try:
            user = authenticate(get_session(), form.email.data, form.password.data, source=sessions.address(),
                                settings=settings)
        except DirectoryUnavailable:  # logged with its cause; never reported as a wrong password
            if "local" in settings.auth_methods:  # a local password was checked too and did not match
                sessions.note_failed_attempt()
            flash(_("Sign-in through the hospital directory is unavailable right now. Try again later or ask "
                    "the administrator."), "error")
            return render_template("auth/login.html", form=form), 200
        if user is not None:
            login_user(user)
            sessions.begin(user)
            return redirect(_safe_next(request.args.get("next")))
        sessions.note_failed_attempt()
        flash(_("The e-mail or password is not right."), "error")
        return render_template("auth/login.html", form=form), 200
    return render_template("auth/login.html", form=form)


@bp.post("/logout")
@login_required
def logout():
    """Sign out: every session of the account ends (a copy of this cookie is refused from now on)."""
    form = ConfirmForm()
    if form.validate_on_submit():
        sign_out(get_session(), me(), source=sessions.address())
        logout_user()
        session.clear()
    return redirect(url_for("auth.login"))


@bp.post("/locale/<code>")
def set_locale(code: str):
    form = ConfirmForm()
    response = redirect(_safe_next(request.form.get("next") or request.referrer and urlsplit(request.referrer).path))
    if form.validate_on_submit() and code in LOCALES:
        response.set_cookie("locale", code, max_age=365 * 24 * 3600, samesite="Lax", httponly=True)
    return response
