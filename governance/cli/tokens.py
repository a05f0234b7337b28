"""``govern token``: API tokens from the shell, for setting up a CI pipeline or trying ``govern submit`` on
the demo (users make their own on the account page)."""

from __future__ import annotations

import click

from ..db import get_session
from ..models import ApiToken
from ..operations import GovernanceError
from ..operations.tokens import create_token, revoke_token
from .common import transactional, user_by_email


@click.group()
def token() -> None:
    """API tokens for the REST API and `govern submit`."""


@token.command("create")
@click.option("--user", "email", required=True, help="E-mail of the user the token acts as.")
@click.option("--scope", type=click.Choice(["read", "submit"]), default="read", show_default=True)
@click.option("--name", default="cli", show_default=True, help="A label to recognise the token by.")
@transactional
def token_create(email: str, scope: str, name: str) -> None:
    """Create a token and print it on standard output, alone (it is shown once; only its hash is kept):
    export GOVERNANCE_TOKEN=$(govern token create --user dev@demo.hospital --scope submit)"""
    owner = user_by_email(email)
    if not owner.active:
        raise GovernanceError(f"{owner.email} is deactivated")
    created, secret = create_token(get_session(), owner, name=name, scope=scope, actor=None)
    click.echo(secret)
    click.echo(f"token {created.id} ({created.prefix}…, {scope}) for {owner.email}; revoke it with "
               f"'govern token revoke {created.id}'", err=True)


@token.command("revoke")
@click.argument("token_id", type=int)
@transactional
def token_revoke(token_id: int) -> None:
    """Revoke a token by its id."""
    found = get_session().get(ApiToken, token_id)
    if found is None:
        raise GovernanceError(f"no token {token_id}")
    revoke_token(get_session(), found, actor=None)
    click.echo(f"token {token_id} ({found.prefix}…) revoked")
