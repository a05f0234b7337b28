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
from .vocabulary import say


def _named(label: str, error: str) -> str:
    """A field's error naming the field once (a "choose one" message names it already)."""
    return error if error.startswith(label) else f"{label}: {error}"


def refusal_reason(refusal: TransitionRefused) -> str:
    """Why the action was refused, in the reader's language and without the guard's id; the application log keeps
    the event, the guard and the English reason (what the event log, the CLI and support speak)."""
    current_app.logger.info("refused: %s", refusal)
    return say(refusal.reason)


def fire_posted_action(subject, event: str, target: str) -> Response:
    """Fire ``event`` on ``subject`` with the posted form of its declared fields, then go back to ``target``
    saying what happened: which field is wrong, which guard refused and why, or that it is done. A form that
    posts the ``lock_version`` its page showed is refused (409) once someone else has acted since."""
    session = get_session()
    try:
        transition = find_transition(subject, event)
    except TransitionRefused as refusal:
        flash(refusal_reason(refusal), "error")
        return redirect(target, code=303)
    form = action_form_class(transition)(prefix=event)
    if not form.validate_on_submit():
        problems = "; ".join(_named(str(form[name].label.text), str(error))
                             for name, errors in form.errors.items() for error in errors)
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
        flash(_("Refused: %(reason)s", reason=refusal_reason(refusal)), "error")
        return redirect(target, code=303)
    flash(_("Done: %(label)s.", label=_(transition.label)), "success")
    return redirect(target, code=303)
