"""``govern demo``: demo accounts for every role and cases in several states (idempotent)."""

from __future__ import annotations

import time
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from ..demo import seed


@click.command()
@click.option("--medsafetybench", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="MedSafetyBench's folder (with test/<generator>/*.csv): its 900 evaluation requests are imported "
                   "and every gate asks them beside the builtin bank.")
@with_appcontext
def demo(medsafetybench: Path | None) -> None:
    """Switch this instance to demo mode and seed it; prints the demo accounts."""
    started = time.monotonic()

    def progress(step: int, steps: int, doing: str) -> None:
        # on stderr: stdout stays the report (cases and accounts) a script may read
        click.echo(f"[{step}/{steps}] {doing} … ({time.monotonic() - started:.0f} s)", err=True)

    report = seed(current_app, medsafetybench, progress)
    click.echo(f"demo ready in {time.monotonic() - started:.0f} s", err=True)
    for line in report.created:
        click.echo(f"created {line}")
    click.echo("Cases:")
    for case in report.cases:
        click.echo(f"  #{case['id']:<3} {case['state']:<26} {(case['pathway'] or '-'):<16} {case['title']}")
    click.echo("Demo accounts (this instance only; passwords are in instance/demo-accounts.json):")
    for account in report.accounts:
        click.echo(f"  {account['email']:<28} {account['password']:<14} {', '.join(account['roles'])}")
