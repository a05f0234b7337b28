"""dossier: a decision letter is a signed document too (gate 'letter')

The letter to the submitter is rendered, signed, stored and verified like a dossier, so the ``dossier.gate`` CHECK
constraint gains 'letter'. PostgreSQL changes the constraint in place; SQLite rebuilds the table (batch mode), which
drops the append-only triggers: they are put back.

Revision ID: 0008_decision_letters
Revises: 0007_committee_review
Create Date: 2026-12-07
"""
from collections.abc import Sequence

from alembic import op

revision: str = "0008_decision_letters"
down_revision: str | None = "0007_committee_review"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEFORE = ("audit", "decision", "suspension", "continuing_review")
AFTER = (*BEFORE, "letter")


def _clause(gates: Sequence[str]) -> str:
    return "gate IN ({})".format(", ".join(f"'{gate}'" for gate in gates))


def _recreate_triggers() -> None:
    """SQLite batch mode rebuilds the table, dropping its append-only triggers: put them back."""
    if op.get_bind().dialect.name == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(f"DROP TRIGGER IF EXISTS dossier_no_{action.lower()}")
            op.execute(f"CREATE TRIGGER dossier_no_{action.lower()} BEFORE {action} ON dossier "
                       f"BEGIN SELECT RAISE(ABORT, 'dossier is append-only: {action} refused'); END")


def _replace(gates: Sequence[str]) -> None:
    with op.batch_alter_table("dossier", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_dossier_gate_valid"), type_="check")
        batch_op.create_check_constraint(op.f("ck_dossier_gate_valid"), _clause(gates))
    _recreate_triggers()


def upgrade() -> None:
    _replace(AFTER)


def downgrade() -> None:
    # A database holding letters cannot go back: the old constraint would refuse those rows (and they are
    # append-only), so the downgrade fails loudly rather than losing signed documents.
    _replace(BEFORE)
