"""Sign-in and sign-out."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user

from ..db import get_session
from ..operations.users import authenticate
from .forms import ConfirmForm, LoginForm

bp = Blueprint("auth", __name__)


def _safe_next(target: str | None) -> str:
    if not target:
        return url_for("dashboard.index")
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc and target.startswith("/") else url_for("dashboard.index")


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.index"))
    form = LoginForm()
    if form.validate_on_submit():
        settings = current_app.config["GOVERNANCE"]
        user = authenticate(get_session(), form.email.data, form.password.data,
                            max_failures=settings.login_max_failures, lockout_minutes=settings.login_lockout_minutes,
                            source=request.remote_addr or "")
        if user is not None:
            login_user(user)
            return redirect(_safe_next(request.args.get("next")))
        flash(_("The e-mail or password is not right, or the account is locked."), "error")
        return render_template("auth/login.html", form=form), 200
    return render_template("auth/login.html", form=form)


@bp.post("/logout")
@login_required
def logout():
    form = ConfirmForm()
    if form.validate_on_submit():
        logout_user()
    return redirect(url_for("auth.login"))


@bp.post("/locale/<code>")
def set_locale(code: str):
    form = ConfirmForm()
    response = redirect(_safe_next(request.form.get("next") or request.referrer and urlsplit(request.referrer).path))
    if form.validate_on_submit() and code in ("en", "zh_CN"):
        response.set_cookie("locale", code, max_age=365 * 24 * 3600, samesite="Lax", httponly=True)
    return response
