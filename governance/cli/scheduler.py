"""``govern scheduler …``: continuing-review reminders and expiry, scheduled re-audits, catch-up work."""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime

import click
from flask.cli import with_appcontext
from sqlalchemy import select

from ..db import get_db, get_session
from ..models import Deployment
from ..scheduler import run_forever, tick
from .common import echo_json, settings


def parse_moment(text: str | None) -> datetime | None:
    """An ISO 8601 date or date-time; without a zone it is UTC."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 date or date-time (e.g. 2027-11-25 or "
                                 "2027-11-25T08:00:00Z)", param_hint="--now") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@click.group()
def scheduler() -> None:
    """The watch after approval: reminders, suspensions, expiry, re-audits."""


@scheduler.command("tick")
@click.option("--now", "now_text", metavar="ISO_DATETIME", help="Run the pass as if it were this moment (UTC "
                                                                "unless a zone is given); default: now.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@with_appcontext
def tick_command(now_text: str | None, as_json: bool) -> None:
    """Run one pass of everything due (for cron, and for testing with a controlled clock)."""
    report = tick(get_db().engine, settings(), parse_moment(now_text))
    if as_json:
        echo_json(report.as_dict())
    else:
        for line in report.lines():
            click.echo(line)
    if report.errors:
        raise SystemExit(1)


@scheduler.command("run")
@click.option("--interval", type=click.FloatRange(min=1), default=300.0, show_default=True,
              help="Seconds between passes.")
@with_appcontext
def run_command(interval: float) -> None:
    """Run a pass every INTERVAL seconds until interrupted (SIGINT or SIGTERM)."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_args: stop.set())
    click.echo(f"scheduler: a pass every {interval:g} s; Ctrl-C stops")

    def show(report) -> None:
        for line in report.lines():
            click.echo(line)

    run_forever(get_db().engine, settings(), interval, stop, on_report=show)
    click.echo("scheduler stopped")


@scheduler.command("due")
@with_appcontext
def due_command() -> None:
    """List deployments with their continuing-review due date and next re-audit."""
    rows = get_session().execute(select(Deployment).where(Deployment.continuing_review_due.is_not(None))
                                 .order_by(Deployment.continuing_review_due, Deployment.id)).scalars().all()
    if not rows:
        click.echo("no deployment has a continuing-review due date (none approved yet)")
    for deployment in rows:
        next_reaudit = deployment.next_reaudit_at.isoformat(timespec="minutes") if deployment.next_reaudit_at else "—"
        click.echo(f"{deployment.id:>4}  {deployment.status:<10} due {deployment.continuing_review_due.isoformat()}  "
                   f"next re-audit {next_reaudit}  {deployment.name}")
