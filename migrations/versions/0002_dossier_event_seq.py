"""dossier: the gate event it documents, and its page count

Revision ID: 0002_dossier_event_seq
Revises: 0001_initial
Create Date: 2026-11-25
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_dossier_event_seq"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _recreate_triggers() -> None:
    """SQLite batch mode rebuilds the table, dropping its append-only triggers: put them back."""
    if op.get_bind().dialect.name == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(f"DROP TRIGGER IF EXISTS dossier_no_{action.lower()}")
            op.execute(f"CREATE TRIGGER dossier_no_{action.lower()} BEFORE {action} ON dossier "
                       f"BEGIN SELECT RAISE(ABORT, 'dossier is append-only: {action} refused'); END")


def upgrade() -> None:
    with op.batch_alter_table("dossier", schema=None) as batch_op:
        batch_op.add_column(sa.Column("event_seq", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("page_count", sa.Integer(), nullable=False, server_default="0"))
        batch_op.create_index(batch_op.f("ix_dossier_event_seq"), ["event_seq"], unique=False)
    _recreate_triggers()


def downgrade() -> None:
    with op.batch_alter_table("dossier", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dossier_event_seq"))
        batch_op.drop_column("page_count")
        batch_op.drop_column("event_seq")
    _recreate_triggers()
