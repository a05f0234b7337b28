"""Workflow events fired from a page's action form: one path for cases and deployments alike."""

from __future__ import annotations

from flask import current_app, flash, redirect, request
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from ..db import get_session
from ..operations import ConflictError, TransitionRefused, fire
from ..operations.engine import find_transition
from .access import me
from .forms import action_form_class, form_data


def fire_posted_action(subject, event: str, target: str) -> Response:
    """Fire ``event`` on ``subject`` with the posted form of its declared fields, then go back to ``target``
    saying what happened: which field is wrong, which guard refused and why, or that it is done. A form that
    posts the ``lock_version`` its page showed is refused (409) once someone else has acted since."""
    session = get_session()
    try:
        transition = find_transition(subject, event)
    except TransitionRefused as refusal:
        flash(refusal.reason, "error")
        return redirect(target, code=303)
    form = action_form_class(transition)(prefix=event)
    if not form.validate_on_submit():
        problems = "; ".join(f"{form[name].label.text}: {', '.join(errors)}" for name, errors in form.errors.items())
        flash(_("Not done: %(problems)s", problems=problems), "error")
        return redirect(target, code=303)
    seen = request.form.get("lock_version", type=int)
    if seen is not None and seen != subject.lock_version:
        raise ConflictError(_("This changed since you opened it (someone else acted on it). Review the page and "
                              "try again."))
    try:
        fire(session, subject, event, me(), form_data(form, transition), settings=current_app.config["GOVERNANCE"])
    except TransitionRefused as refusal:
        session.rollback()
        flash(_("Refused by %(guard)s: %(reason)s", guard=refusal.guard, reason=refusal.reason), "error")
        return redirect(target, code=303)
    flash(_("Done: %(label)s.", label=_(transition.label)), "success")
    return redirect(target, code=303)
