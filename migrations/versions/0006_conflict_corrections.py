"""conflict declarations that hold: the chair's corrections as new rows, never edits

A member declares once per case (a partial unique index on the rows they wrote themselves); the chair may
record a correction, with a reason, as a new row that names the row it supersedes; the member's standing is
their latest row. Declarations become append-only in the database, like the event log and votes.

Revision ID: 0006_conflict_corrections
Revises: 0005_session_epoch
Create Date: 2026-12-20
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # noqa: F401  (the columns use its AutoString)
from alembic import op

revision: str = "0006_conflict_corrections"
down_revision: str | None = "0005_session_epoch"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "conflict_declaration"
OWN = sa.text("corrected_by_id IS NULL")


def _append_only() -> None:
    """Refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL); created after the SQLite batch rebuild, which
    drops a table's triggers."""
    if op.get_bind().dialect.name == "postgresql":
        # governance_append_only() is created by 0001_initial
        op.execute(f"CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE} "
                   f"FOR EACH ROW EXECUTE FUNCTION governance_append_only()")
        op.execute(f"CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE} "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION governance_append_only()")
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER {TABLE}_no_{action.lower()} BEFORE {action} ON {TABLE} "
                       f"BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only: {action} refused'); END")


def _drop_append_only() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_append_only ON {TABLE}")
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_truncate ON {TABLE}")
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_{action.lower()}")


def upgrade() -> None:
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.add_column(sa.Column("corrected_by_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("corrects_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default=""))
        batch_op.drop_constraint("uq_conflict_declaration_submission_user", type_="unique")
        batch_op.create_foreign_key(batch_op.f("fk_conflict_declaration_corrects_id_conflict_declaration"),
                                    TABLE, ["corrects_id"], ["id"])
        batch_op.create_foreign_key(batch_op.f("fk_conflict_declaration_corrected_by_id_user_account"),
                                    "user_account", ["corrected_by_id"], ["id"])
        batch_op.create_check_constraint(batch_op.f("ck_conflict_declaration_correction_explained"),
                                         "corrected_by_id IS NULL OR length(reason) > 0")
    op.create_index("uq_conflict_declaration_own", TABLE, ["submission_id", "user_id"], unique=True,
                    sqlite_where=OWN, postgresql_where=OWN)
    _append_only()


def downgrade() -> None:
    _drop_append_only()
    op.drop_index("uq_conflict_declaration_own", table_name=TABLE, sqlite_where=OWN, postgresql_where=OWN)
    # the corrections cannot be kept without their columns: the member's own declarations remain
    op.execute(f"DELETE FROM {TABLE} WHERE corrected_by_id IS NOT NULL")
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_conflict_declaration_correction_explained"), type_="check")
        batch_op.drop_constraint(batch_op.f("fk_conflict_declaration_corrected_by_id_user_account"),
                                 type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("fk_conflict_declaration_corrects_id_conflict_declaration"),
                                 type_="foreignkey")
        batch_op.create_unique_constraint("uq_conflict_declaration_submission_user", ["submission_id", "user_id"])
        batch_op.drop_column("reason")
        batch_op.drop_column("corrects_id")
        batch_op.drop_column("corrected_by_id")
