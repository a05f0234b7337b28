"""``govern demo``: demo accounts for every role and cases in several states (idempotent)."""

from __future__ import annotations

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
    report = seed(current_app, medsafetybench)
    for line in report.created:
        click.echo(f"created {line}")
    click.echo("Cases:")
    for case in report.cases:
        click.echo(f"  #{case['id']:<3} {case['state']:<26} {(case['pathway'] or '-'):<16} {case['title']}")
    click.echo("Demo accounts (this instance only; passwords are in instance/demo-accounts.json):")
    for account in report.accounts:
        click.echo(f"  {account['email']:<28} {account['password']:<14} {', '.join(account['roles'])}")
