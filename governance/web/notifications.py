"""A person's notifications: reminders, incidents, suspensions (the e-mailed ones too)."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import login_required
from sqlalchemy import select, update

from ..db import get_session
from ..models import Notification, utcnow
from .access import me
from .forms import ConfirmForm
from .listing import paginate

bp = Blueprint("notifications", __name__, url_prefix="/notifications")


@bp.get("")
@login_required
def index():
    session = get_session()
    query = select(Notification).where(Notification.user_id == me().id)
    page = paginate(session, query, {"created": Notification.created_at, "kind": Notification.kind}, "created")
    return render_template("notifications.html", page=page, form=ConfirmForm())


@bp.post("/read")
@login_required
def mark_read():
    if ConfirmForm().validate_on_submit():
        get_session().execute(update(Notification).where(Notification.user_id == me().id,
                                                         Notification.read_at.is_(None)).values(read_at=utcnow()))
        flash(_("All notifications marked as read."), "success")
    return redirect(url_for("notifications.index"), code=303)
