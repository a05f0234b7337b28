"""The ``govern`` command. Subcommands are imported when they are used, so ``govern --help`` answers at
once and ``govern submit`` (the CI client) runs where the server's dependencies are not installed.

A user error prints one line saying what is wrong and exits non-zero, without a traceback. Server commands
run in the app's context (built on first use); the client command needs no app.

Nothing here imports the rest of the project at import time: keep it that way (see ``benchmarks/cli_startup.py``).
"""

from __future__ import annotations

import importlib

import click

from ..errors import ConfigError, DataFileError, GovernanceError

USER_ERRORS = (GovernanceError, DataFileError, ConfigError, FileNotFoundError, PermissionError, ValueError)

#: command name -> ("module:attribute" under governance.cli, its one-line help). The help is written here so
#: that ``govern --help`` imports nothing; a test keeps it equal to each command's own docstring.
COMMANDS = {
    "init": ("core:init", "Create the instance folder and its secret key, and migrate the database to head "
                          "(idempotent)."),
    "run": ("core:run", "Serve the web app (the development server; use gunicorn 'app:app' in production)."),
    "db": ("core:db", "Database migrations (Alembic)."),
    "user": ("core:user", "Manage accounts."),
    "submission": ("core:submission", "Inspect cases."),
    "fire": ("core:fire_command", "Drive the workflow from the shell: fire EVENT on a case as a user."),
    "workflow": ("core:workflow", "The declared workflow."),
    "log": ("log:log", "The hash-chained event log."),
    "deployment": ("cases:deployment", "AI deployments."),
    "version": ("cases:version", "Model versions."),
    "case": ("cases:case", "Open cases (submissions)."),
    "meeting": ("cases:meeting", "Full-board meetings."),
    "condition": ("cases:condition", "Conditions of approval: list them, record one met (with evidence) or waive "
                                     "it (the chair)."),
    "obligation": ("cases:obligation", "Obligations named by classifications."),
    "document": ("documents:document", "Documents attached as evidence: attach a file to a case, deployment, "
                                       "obligation, condition or incident (the same type and name again is its next "
                                       "version), list them."),
    "checklist": ("cases:checklist", "Review checklists."),
    "classify": ("classify:classify", "Classify deployment descriptors (China / US / EU), or assess a change's "
                                      "materiality."),
    "rules": ("classify:rules", "The rule files, checklists and policies in regulations/ and checklists/."),
    "items": ("audit:items", "Benchmark item banks (FILE may be 'builtin', the shipped bank)."),
    "audit": ("audit:audit", "Benchmark audits."),
    "policy": ("audit:policy", "Gate policies: what each criterion can detect with the items it names."),
    "judge": ("judge:judge", "Graders of behaviour and open answers: validate one against human labels, list the "
                             "records."),
    "demo": ("demo:demo", "Switch this instance to demo mode and seed it; prints the demo accounts."),
    "keys": ("dossiers:keys", "The institution's signing key."),
    "dossier": ("dossiers:dossier", "Signed PDF dossiers."),
    "modelcard": ("modelcard:modelcard", "Write the Applied Model Card (CHAI schema v0.2) of an approved model "
                                         "version."),
    "simulation": ("simulation:simulation", "Safety simulation: import the institution's own queries "
                                            "(de-identified), list the query sets."),
    "watch": ("simulation:watch", "Live watch: judged samples of a deployment's real interactions and its chart."),
    "scheduler": ("scheduler:scheduler", "The watch after approval: reminders, suspensions, expiry, re-audits."),
    "submit": ("submit:submit", "Submit a model version for review from CI (initial deployment or change control)."),
    "token": ("tokens:token", "API tokens for the REST API and `govern submit`."),
}
#: Commands that run without the server (no app, no database): the CI client.
CLIENT_COMMANDS = frozenset({"submit"})
#: Commands that read the event log and the instance only: the settings and the database, not the whole system.
CORE_COMMANDS = frozenset({"log"})


def _core_cli_app():
    from ..app import create_core_app

    return create_core_app(require_secret=False)


def _cli_app():
    from ..app import create_app

    # Short-lived commands run their jobs in the caller, not in a thread that would die with the process.
    return create_app({"audit_dispatch": "inline", "dossier_dispatch": "inline", "mail_dispatch": "inline"},
                      require_secret=False)


class GovernGroup(click.Group):
    """Lazy subcommands; the Flask app is made available (as Flask's ScriptInfo) only to server commands."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, _, attribute = COMMANDS[name][0].partition(":")
        return getattr(importlib.import_module(f"{__name__}.{module}"), attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from the table, without importing any command."""
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][1]) for name in self.list_commands(ctx)])

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name, command, rest = super().resolve_command(ctx, args)
        if ctx.obj is None and name not in CLIENT_COMMANDS:
            from flask.cli import ScriptInfo

            ctx.obj = ScriptInfo(create_app=_core_cli_app if name in CORE_COMMANDS else _cli_app, set_debug_flag=False,
                                 load_dotenv_defaults=False)
        return name, command, rest

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            message = str(exc) or type(exc).__name__
            if isinstance(exc, (FileNotFoundError, PermissionError)) and exc.filename:
                message = f"{exc.strerror}: {exc.filename}"
            raise click.ClickException(message) from None


cli = GovernGroup(name="govern",
                  help="Ethics review (IRB) of AI deployments: workflow, classification, audits, dossiers.")


def main() -> None:
    cli.main(prog_name="govern")
