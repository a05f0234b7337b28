"""Helpers shared by the CLI modules: the command's session (committed once), users, JSON output."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click
from flask import current_app
from flask.cli import with_appcontext

from ..errors import GovernanceError

if TYPE_CHECKING:
    from ..config import Settings


def settings() -> Settings:
    return current_app.config["GOVERNANCE"]


def transactional(function: Callable) -> Callable:
    """Run the command in the app context; commit once if it returns, roll back if it raises."""
    @with_appcontext
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        from ..db import get_session  # the database layer loads when a database command runs, not at start-up

        session = get_session()
        try:
            result = function(*args, **kwargs)
            session.commit()
            return result
        except BaseException:
            session.rollback()
            raise
    return wrapper


def user_by_email(email: str):
    from ..db import get_session
    from ..operations.users import find_user

    user = find_user(get_session(), email)
    if user is None:
        raise GovernanceError(f"no user with e-mail {email}")
    return user


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def parse_json_option(text: str | None, option: str) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GovernanceError(f"{option} is not valid JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(value, dict):
        raise GovernanceError(f"{option} must be a JSON object")
    return value
