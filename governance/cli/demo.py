"""``govern demo``: demo accounts for every role and cases in several states (idempotent)."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from ..demo import seed


@click.command()
@with_appcontext
def demo() -> None:
    """Switch this instance to demo mode and seed it; prints the demo accounts."""
    report = seed(current_app)
    for line in report.created:
        click.echo(f"created {line}")
    click.echo("Cases:")
    for case in report.cases:
        click.echo(f"  #{case['id']:<3} {case['state']:<26} {(case['pathway'] or '-'):<16} {case['title']}")
    click.echo("Demo accounts (this instance only; passwords are in instance/demo-accounts.json):")
    for account in report.accounts:
        click.echo(f"  {account['email']:<28} {account['password']:<14} {', '.join(account['roles'])}")
