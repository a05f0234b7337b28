"""Sign-in and sign-out: the password form (local and directory) and the OpenID provider's button."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user

from ..db import get_session
from ..domain import N_
from ..extensions import limiter
from ..operations import oidc
from ..operations.directory import DirectoryUnavailable, check_settings
from ..operations.users import SignInRefused, authenticate, oidc_sign_in, sign_out
from . import sessions
from .access import me
from .forms import ConfirmForm, LoginForm
from .i18n import LOCALES

bp = Blueprint("auth", __name__)


@bp.record_once
def _check_directory_settings(state) -> None:
    """Stop at start when ``ldap_group_roles`` or ``oidc_role_map`` names a role that does not exist (config
    cannot know the roles)."""
    check_settings(state.app.config["GOVERNANCE"])
    oidc.check_settings(state.app.config["GOVERNANCE"])


def _page(form: LoginForm):
    """The sign-in page: the provider's button and/or the password form, as ``auth_methods`` says."""
    settings = current_app.config["GOVERNANCE"]
    return render_template("auth/login.html", form=form, methods=settings.auth_methods,
                           provider=settings.oidc_display_name)


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
    if not PASSWORD_METHODS & set(current_app.config["GOVERNANCE"].auth_methods):
        return _page(form), 200 if request.method == "GET" else 400
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
            return _page(form), 200
        if user is not None:
            login_user(user)
            sessions.begin(user)
            return redirect(_safe_next(request.args.get("next")))
        sessions.note_failed_attempt()
        flash(_("The e-mail or password is not right."), "error")
        return _page(form), 200
    return _page(form)


#: The methods the e-mail and password form checks.
PASSWORD_METHODS = frozenset({"local", "ldap"})
#: Where the browser's session keeps a started OpenID sign-in until the provider answers.
PENDING_KEY = "oidc_pending"


@bp.post("/auth/oidc/start")
def oidc_start():
    """Send the browser to the provider (the button on the sign-in page posts here, with its CSRF token)."""
    settings = current_app.config["GOVERNANCE"]
    if "oidc" not in settings.auth_methods:
        abort(404)
    if not ConfirmForm().validate_on_submit():
        return redirect(url_for("auth.login"))
    redirect_uri = settings.server_name_url.rstrip("/") + url_for("auth.oidc_callback")
    try:
        address, pending = oidc.begin(settings, redirect_uri)
    except oidc.ProviderUnavailable:  # logged with its cause
        _unavailable(settings.oidc_display_name)
        return redirect(url_for("auth.login"))
    session[PENDING_KEY] = {**pending, "next": _safe_next(request.args.get("next"))}
    return redirect(address)


@bp.get("/auth/oidc/callback")
def oidc_callback():
    """The provider's answer: sign the person in with the mapped roles, or say why not."""
    settings = current_app.config["GOVERNANCE"]
    if "oidc" not in settings.auth_methods:
        abort(404)
    pending = session.pop(PENDING_KEY, None)
    try:
        identity = oidc.finish(settings, pending, request.args)
        user = oidc_sign_in(get_session(), settings, identity, source=sessions.address())
    except oidc.ProviderUnavailable:
        _unavailable(settings.oidc_display_name)
    except oidc.AnswerRefused:
        flash(_("Sign-in through %(provider)s did not complete. Start again from this page.",
                provider=settings.oidc_display_name), "error")
    except SignInRefused as exc:
        flash(_refusal(exc.reason, settings.oidc_display_name), "error")
    else:
        login_user(user)
        sessions.begin(user)
        return redirect(_safe_next(pending.get("next")))
    return redirect(url_for("auth.login"))


#: The provider redirects the browser here with GET; the account, its roles and the events must still commit.
oidc_callback.writes_on_get = True


#: What the page says for each refusal of :data:`governance.operations.users.REFUSALS` (the same keys; a test keeps
#: them equal), with the provider's name as ``%(provider)s``.
REFUSAL_MESSAGES = {
    "no_role": N_("%(provider)s signed you in, but none of your groups grants a role in this application. Ask the "
                  "IRB office to have you added to a group that does."),
    "deactivated": N_("Your account in this application is deactivated. Ask the administrator."),
    "no_email": N_("%(provider)s did not send your e-mail address, which this application needs. Ask the "
                   "administrator."),
    "email_unverified": N_("%(provider)s has not verified your e-mail address, which an account of this application "
                           "already uses. Ask the administrator."),
    "email_taken": N_("Your e-mail address belongs to another account of this application. Ask the administrator."),
}


def _refusal(reason: str, provider: str) -> str:
    return _(REFUSAL_MESSAGES[reason], provider=provider)


def _unavailable(provider: str) -> None:
    flash(_("Sign-in through %(provider)s is unavailable right now. Try again later or ask the administrator.",
            provider=provider), "error")


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
