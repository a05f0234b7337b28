"""sessions that end: user_account.session_epoch

A web session stores the epoch its account had at sign-in; the account's epoch is bumped at sign-out,
password change, role change and deactivation, which refuses every session begun before.

Revision ID: 0005_session_epoch
Revises: 0004_frozen_audits
Create Date: 2026-12-14
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_session_epoch"
down_revision: str | None = "0004_frozen_audits"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("user_account", schema=None) as batch_op:
        batch_op.add_column(sa.Column("session_epoch", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("user_account", schema=None) as batch_op:
        batch_op.drop_column("session_epoch")
