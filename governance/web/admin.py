"""Administration: users and roles, committee composition, API tokens."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from ..db import get_session
from ..domain import Role, values
from ..models import ApiToken, RoleAssignment, User
from ..operations import GovernanceError
from ..operations.tokens import revoke_token
from ..operations.users import create_user, set_active, set_committee_attributes, set_password, set_roles
from ..permissions import roles_of
from . import sessions
from .access import me, require_roles
from .account import password_problem
from .forms import UserForm, opts
from .listing import paginate
from .vocabulary import words

bp = Blueprint("admin", __name__, url_prefix="/admin")


def _form() -> UserForm:
    form = UserForm()
    form.roles.choices = opts([(r, words(r)) for r in values(Role)])
    return form


@bp.get("/users")
@require_roles(Role.ADMIN)
def users():
    session = get_session()
    page = paginate(session, select(User), {"name": User.name, "email": User.email, "created": User.created_at},
                    "name")
    ids = [row.User.id for row in page.rows]
    assigned: dict[int, list[str]] = {}
    for user_id, role in session.execute(select(RoleAssignment.user_id, RoleAssignment.role)
                                         .where(RoleAssignment.user_id.in_(ids))).all():
        assigned.setdefault(user_id, []).append(role)
    return render_template("admin/users.html", page=page, assigned=assigned)


@bp.route("/users/new", methods=["GET", "POST"])
@require_roles(Role.ADMIN)
def new_user():
    form = _form()
    if form.validate_on_submit():
        if not form.password.data:
            form.password.errors = list(form.password.errors) + [_("A new account needs a password.")]
        else:
            try:
                created = create_user(get_session(), email=form.email.data, name=form.name.data, roles=form.roles.data,
                                      password=form.password.data, actor=me(), is_scientist=form.is_scientist.data,
                                      is_affiliated=form.is_affiliated.data)
            except GovernanceError as exc:
                flash(password_problem(exc), "error")
            else:
                flash(_("User %(email)s created.", email=created.email), "success")
                return redirect(url_for("admin.users"), code=303)
    return render_template("admin/user.html", form=form, user=None)


@bp.route("/users/<id:user_id>", methods=["GET", "POST"])
@require_roles(Role.ADMIN)
def edit_user(user_id: int):
    session = get_session()
    user = session.get(User, user_id)
    if user is None:
        abort(404)
    form = _form()
    if request.method == "GET":
        form.email.data, form.name.data = user.email, user.name
        form.roles.data = sorted(roles_of(session, user))
        form.is_scientist.data, form.is_affiliated.data, form.active.data = (user.is_scientist, user.is_affiliated,
                                                                              user.active)
    elif form.validate_on_submit():
        try:
            if set(form.roles.data) != set(roles_of(session, user)):
                set_roles(session, user, form.roles.data, actor=me())
            if (form.is_scientist.data, form.is_affiliated.data) != (user.is_scientist, user.is_affiliated):
                set_committee_attributes(session, user, is_scientist=form.is_scientist.data,
                                         is_affiliated=form.is_affiliated.data, actor=me())
            if form.active.data != user.active:
                if user.id == me().id and not form.active.data:
                    raise GovernanceError(_("You cannot deactivate your own account."))
                set_active(session, user, form.active.data, actor=me())
            if form.password.data:
                set_password(session, user, form.password.data, actor=me())
        except GovernanceError as exc:
            session.rollback()
            flash(password_problem(exc), "error")
        else:
            sessions.keep_current(user)  # an admin who edited their own account stays signed in
            flash(_("Saved."), "success")
            return redirect(url_for("admin.edit_user", user_id=user.id), code=303)
    tokens = session.execute(select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id)).scalars().all()
    return render_template("admin/user.html", form=form, user=user, tokens=tokens)


@bp.get("/tokens")
@require_roles(Role.ADMIN)
def tokens():
    session = get_session()
    query = select(ApiToken, User.email).join(User, User.id == ApiToken.user_id)
    page = paginate(session, query, {"created": ApiToken.created_at, "used": ApiToken.last_used_at}, "created")
    return render_template("admin/tokens.html", page=page)


@bp.post("/tokens/<id:token_id>/revoke")
@require_roles(Role.ADMIN)
def revoke(token_id: int):
    session = get_session()
    token = session.get(ApiToken, token_id)
    if token is None:
        abort(404)
    revoke_token(session, token, actor=me())
    flash(_("Token revoked."), "success")
    return redirect(request.referrer or url_for("admin.tokens"), code=303)
