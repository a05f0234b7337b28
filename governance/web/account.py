"""The signed-in user's own account: password and API tokens (shown once, stored hashed)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import login_required
from sqlalchemy import select

from ..db import get_session
from ..models import ApiToken
from ..operations import GovernanceError
from ..operations.tokens import create_token, revoke_token
from ..operations.users import set_password
from ..security import verify_password
from .access import me
from .forms import PasswordChangeForm, TokenForm

bp = Blueprint("account", __name__, url_prefix="/account")


def _page(token_form=None, password_form=None, new_token: str | None = None):
    tokens = get_session().execute(select(ApiToken).where(ApiToken.user_id == me().id)
                                   .order_by(ApiToken.id.desc())).scalars().all()
    return render_template("account/index.html", tokens=tokens, token_form=token_form or TokenForm(),
                           password_form=password_form or PasswordChangeForm(), new_token=new_token)


@bp.get("/")
@login_required
def index():
    return _page()


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
def password():
    form = PasswordChangeForm()
    if not form.validate_on_submit():
        return _page(password_form=form), 400
    if not verify_password(me().password_hash, form.current.data):
        form.current.errors = list(form.current.errors) + [_("That is not your current password.")]
        return _page(password_form=form), 400
    try:
        set_password(get_session(), me(), form.new.data, actor=me())
    except GovernanceError as exc:
        form.new.errors = list(form.new.errors) + [str(exc)]
        return _page(password_form=form), 400
    flash(_("Password changed."), "success")
    return redirect(url_for("account.index"), code=303)
