"""The ``govern`` command: a Flask CLI group that knows the app, with subcommands in their own modules.

A user error prints one line saying what is wrong and exits non-zero, without a traceback.
"""

from __future__ import annotations

import click
from flask.cli import FlaskGroup

from ..config import ConfigError
from ..datafiles import DataFileError
from ..operations import GovernanceError

USER_ERRORS = (GovernanceError, DataFileError, ConfigError, FileNotFoundError, PermissionError, ValueError)


def _cli_app():
    from .. import create_app

    # Short-lived commands run audits in the caller, not in a thread that would die with the process.
    return create_app({"audit_dispatch": "inline", "dossier_dispatch": "inline"}, require_secret=False)


class GovernGroup(FlaskGroup):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            message = str(exc) or type(exc).__name__
            if isinstance(exc, (FileNotFoundError, PermissionError)) and exc.filename:
                message = f"{exc.strerror}: {exc.filename}"
            raise click.ClickException(message) from None


def _build() -> click.Group:
    from . import audit, cases, classify, core, demo, dossiers, scheduler, submit, tokens

    group = GovernGroup(name="govern", create_app=_cli_app, add_default_commands=False, load_dotenv=False,
                        help="Ethics review (IRB) of AI deployments: workflow, classification, audits, dossiers.")
    for module in (core, cases, classify, audit, demo, dossiers, scheduler, submit, tokens):
        module.register(group)
    return group


cli = _build()


def main() -> None:
    cli.main(prog_name="govern")
