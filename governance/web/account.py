"""The signed-in user's own account: password, language, notification e-mail, API tokens (shown once, stored
hashed)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import login_required
from sqlalchemy import select

from ..db import get_session
from ..extensions import limiter
from ..models import ApiToken
from ..operations import GovernanceError
from ..operations.tokens import create_token, revoke_token
from ..operations.users import set_language, set_notification_delivery, set_password
from ..security import WeakPasswordError, verify_password
from . import sessions
from .access import me
from .forms import DeliveryForm, LanguageForm, PasswordChangeForm, TokenForm

bp = Blueprint("account", __name__, url_prefix="/account")


def password_problem(exc: GovernanceError) -> str:
    """The policy's sentence in the page's language (other errors as they are)."""
    if isinstance(exc, WeakPasswordError):
        return _(exc.template, **exc.params)
    return str(exc)


def _page(token_form=None, password_form=None, new_token: str | None = None):
    tokens = get_session().execute(select(ApiToken).where(ApiToken.user_id == me().id)
                                   .order_by(ApiToken.id.desc())).scalars().all()
    return render_template("account/index.html", tokens=tokens, token_form=token_form or TokenForm(),
                           password_form=password_form or PasswordChangeForm(), new_token=new_token,
                           language_form=LanguageForm(language=me().language),
                           delivery_form=DeliveryForm(delivery=me().notification_delivery))


@bp.get("/")
@login_required
def index():
    return _page()


@bp.post("/language")
@login_required
def language():
    """The person's language for pages and e-mails (the header's switch still overrides it on this browser)."""
    form = LanguageForm()
    if not form.validate_on_submit():
        return _page(), 400
    set_language(get_session(), me(), form.language.data, actor=me())
    flash(_("Language saved."), "success")
    response = redirect(url_for("account.index"), code=303)
    response.delete_cookie("locale")  # the saved choice applies at once, not a switch made earlier here
    return response


@bp.post("/delivery")
@login_required
def delivery():
    """E-mail per notification, or a daily digest (the in-app notifications are the same either way)."""
    form = DeliveryForm()
    if not form.validate_on_submit():
        return _page(), 400
    set_notification_delivery(get_session(), me(), form.delivery.data, actor=me())
    flash(_("Notification e-mail saved."), "success")
    return redirect(url_for("account.index") + "#delivery", code=303)


@bp.post("/tokens")
@login_required
def new_token():
    form = TokenForm()
    if not form.validate_on_submit():
        return _page(token_form=form), 400
    _token, secret = create_token(get_session(), me(), name=form.name.data, scope=form.scope.data, actor=me())
    flash(_("Copy the token now: it is shown only once."), "success")
    return _page(new_token=secret)


@bp.post("/tokens/<id:token_id>/revoke")
@login_required
def revoke(token_id: int):
    session = get_session()
    token = session.get(ApiToken, token_id)
    if token is None or token.user_id != me().id:
        abort(404)
    revoke_token(session, token, actor=me())
    flash(_("Token revoked."), "success")
    return redirect(url_for("account.index"), code=303)


@bp.post("/password")
@login_required
@limiter.limit(sessions.pair_limit, key_func=sessions.account_and_address, scope="reauthenticate",
               deduct_when=sessions.failed_attempt)
def password():
    """Change the password. Wrong current passwords are throttled like sign-in; every other session of the
    account ends, this one goes on."""
    form = PasswordChangeForm()
    if not form.validate_on_submit():
        return _page(password_form=form), 400
    if not verify_password(me().password_hash, form.current.data):
        sessions.note_failed_attempt()
        form.current.errors = list(form.current.errors) + [_("That is not your current password.")]
        return _page(password_form=form), 400
    try:
        set_password(get_session(), me(), form.new.data, actor=me())
    except GovernanceError as exc:
        form.new.errors = list(form.new.errors) + [password_problem(exc)]
        return _page(password_form=form), 400
    sessions.keep_current(me())
    flash(_("Password changed."), "success")
    return redirect(url_for("account.index"), code=303)
