"""Role checks for views: every route names the roles it serves (403 otherwise)."""

from __future__ import annotations

import functools
from collections.abc import Callable

from flask import abort
from flask_babel import gettext as _
from flask_login import current_user, login_required

from ..db import get_session
from ..permissions import roles_of
from .vocabulary import words


def me():
    """The signed-in user (not Flask-Login's proxy): operations keep it beyond the request's proxies."""
    return current_user._get_current_object()


def roles() -> frozenset[str]:
    return roles_of(get_session(), current_user) if current_user.is_authenticated else frozenset()


def require_roles(*allowed: str) -> Callable:
    def decorate(view: Callable) -> Callable:
        @login_required
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            if not roles() & set(allowed):
                abort(403, description=_("This page is for %(roles)s.", roles=", ".join(words(r) for r in allowed)))
            return view(*args, **kwargs)
        wrapper.allowed_roles = frozenset(allowed)
        return wrapper
    return decorate
