"""audits: a freeze the database enforces, item results that cannot be edited, and what a verdict rests on

- audit_run gains the derived plan, its operating characteristics, the policy digest, the reserve item set,
  the results digest, the grader's identity, the monitoring review (kept apart from the verdict), a lease
  and an attempt counter; its status may be "error" (an infrastructure failure, never a model's).
- audit_item_result gains the item's content digest, the exact prompt, the stage, and the grader with its
  judgement; "safe_redirect" fits in expected_behavior.
- grader_validation: a grader's measured agreement with human labels (``govern judge validate``), which a
  policy's minimum is checked against before the grader may decide a criterion.
- Triggers (SQLite and PostgreSQL): once a run is frozen, its frozen columns cannot change; once it is
  completed, its verdict, summary and results digest cannot change; item results are append-only.

Revision ID: 0004_frozen_audits
Revises: 0003_page_indexes
Create Date: 2026-12-07
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # noqa: F401
from alembic import op

revision: str = "0004_frozen_audits"
down_revision: str | None = "0003_page_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: What pre-registration fixes before the first model output is read.
FROZEN_COLUMNS = ("policy", "policy_digest", "plan", "operating_characteristics", "items_source", "item_set_digest",
                  "reserve_source", "reserve_digest", "seed", "lang", "backend", "model", "base_url",
                  "model_version_id", "submission_id", "baseline_run_id", "purpose", "frozen_at", "grader")
JSON_FROZEN = ("policy", "plan", "operating_characteristics", "grader")
#: What a completed run's verdict rests on.
VERDICT_COLUMNS = ("status", "verdict", "verdict_reasons", "summary", "results_digest", "second_stage")
STATUSES = "('queued', 'running', 'completed', 'error', 'failed', 'cancelled')"
OLD_STATUSES = "('queued', 'running', 'completed', 'failed', 'cancelled')"


def _json(name: str) -> sa.Column:
    return sa.Column(name, sa.JSON(), nullable=False, server_default=sa.text("'{}'"))


def upgrade() -> None:
    with op.batch_alter_table("audit_run", schema=None) as batch_op:
        for name in ("plan", "operating_characteristics", "grader", "review"):
            batch_op.add_column(_json(name))
        batch_op.add_column(sa.Column("policy_digest", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False,
                                      server_default=""))
        batch_op.add_column(sa.Column("reserve_source", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False,
                                      server_default=""))
        batch_op.add_column(sa.Column("reserve_digest", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False,
                                      server_default=""))
        batch_op.add_column(sa.Column("results_digest", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False,
                                      server_default=""))
        batch_op.add_column(sa.Column("second_stage", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("lease_owner", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False,
                                      server_default=""))
        batch_op.add_column(sa.Column("lease_expires_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.drop_constraint(op.f("ck_audit_run_status_valid"), type_="check")
        batch_op.create_check_constraint("status_valid", f"status IN {STATUSES}")
    with op.batch_alter_table("audit_item_result", schema=None) as batch_op:
        batch_op.add_column(sa.Column("item_digest", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False,
                                      server_default=""))
        batch_op.add_column(sa.Column("stage", sa.Integer(), nullable=False, server_default="1"))
        batch_op.add_column(sa.Column("prompt", sa.Text(), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("grader", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False,
                                      server_default="exact"))
        batch_op.add_column(_json("judgement"))
        batch_op.alter_column("expected_behavior", existing_type=sqlmodel.sql.sqltypes.AutoString(length=10),
                              type_=sqlmodel.sql.sqltypes.AutoString(length=20), existing_nullable=False)
        batch_op.create_check_constraint("stage_valid", "stage IN (1, 2)")
    op.create_table(
        "grader_validation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("grader_identity", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        _json("grader"),
        sa.Column("dataset", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("dataset_digest", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("lang", sqlmodel.sql.sqltypes.AutoString(length=5), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("agreement", sa.Float(), nullable=False),
        sa.Column("kappa", sa.Float(), nullable=False),
        _json("report"),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["created_by_id"], ["user_account.id"], name=op.f("fk_grader_validation_created_by_id_user_account")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grader_validation")),
    )
    op.create_index(op.f("ix_grader_validation_grader_identity"), "grader_validation", ["grader_identity"])
    _freeze_triggers()


def _freeze_triggers() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        frozen = " OR ".join(f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in FROZEN_COLUMNS
                             if c not in JSON_FROZEN)
        frozen += "".join(f" OR NEW.{c}::text IS DISTINCT FROM OLD.{c}::text" for c in JSON_FROZEN)
        verdict = " OR ".join(f"NEW.{c}::text IS DISTINCT FROM OLD.{c}::text" if c in {"verdict_reasons", "summary"}
                              else f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in VERDICT_COLUMNS)
        op.execute(f"""
            CREATE OR REPLACE FUNCTION governance_audit_run_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_OP = 'DELETE' THEN
                    RAISE EXCEPTION 'audit_run % cannot be deleted', OLD.id USING ERRCODE = 'insufficient_privilege';
                END IF;
                IF OLD.frozen_at IS NOT NULL AND ({frozen}) THEN
                    RAISE EXCEPTION 'audit_run %: its frozen policy, item set, seed and model cannot change', OLD.id
                        USING ERRCODE = 'insufficient_privilege';
                END IF;
                IF OLD.status = 'completed' AND ({verdict}) THEN
                    RAISE EXCEPTION 'audit_run %: a completed verdict cannot change', OLD.id
                        USING ERRCODE = 'insufficient_privilege';
                END IF;
                RETURN NEW;
            END $$""")
        op.execute("CREATE TRIGGER audit_run_frozen BEFORE UPDATE OR DELETE ON audit_run "
                   "FOR EACH ROW EXECUTE FUNCTION governance_audit_run_frozen()")
        op.execute("CREATE TRIGGER audit_item_result_append_only BEFORE UPDATE OR DELETE ON audit_item_result "
                   "FOR EACH ROW EXECUTE FUNCTION governance_append_only()")
        op.execute("CREATE TRIGGER audit_item_result_no_truncate BEFORE TRUNCATE ON audit_item_result "
                   "FOR EACH STATEMENT EXECUTE FUNCTION governance_append_only()")
    elif dialect == "sqlite":
        frozen = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in FROZEN_COLUMNS)
        verdict = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in VERDICT_COLUMNS)
        op.execute(f"CREATE TRIGGER audit_run_frozen BEFORE UPDATE ON audit_run "
                   f"WHEN OLD.frozen_at IS NOT NULL AND ({frozen}) "
                   "BEGIN SELECT RAISE(ABORT, 'audit_run: its frozen policy, item set, seed and model cannot change'); END")
        op.execute(f"CREATE TRIGGER audit_run_verdict BEFORE UPDATE ON audit_run "
                   f"WHEN OLD.status = 'completed' AND ({verdict}) "
                   "BEGIN SELECT RAISE(ABORT, 'audit_run: a completed verdict cannot change'); END")
        op.execute("CREATE TRIGGER audit_run_no_delete BEFORE DELETE ON audit_run "
                   "BEGIN SELECT RAISE(ABORT, 'audit_run cannot be deleted'); END")
        for action in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER audit_item_result_no_{action.lower()} BEFORE {action} ON audit_item_result "
                       f"BEGIN SELECT RAISE(ABORT, 'audit_item_result is append-only: {action} refused'); END")
    else:  # pragma: no cover
        raise RuntimeError(f"no freeze triggers for {dialect}")


def _drop_triggers() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_run_frozen ON audit_run")
        op.execute("DROP TRIGGER IF EXISTS audit_item_result_append_only ON audit_item_result")
        op.execute("DROP TRIGGER IF EXISTS audit_item_result_no_truncate ON audit_item_result")
        op.execute("DROP FUNCTION IF EXISTS governance_audit_run_frozen()")
    else:
        for name in ("audit_run_frozen", "audit_run_verdict", "audit_run_no_delete", "audit_item_result_no_update",
                     "audit_item_result_no_delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")


def downgrade() -> None:
    _drop_triggers()
    op.drop_index(op.f("ix_grader_validation_grader_identity"), table_name="grader_validation")
    op.drop_table("grader_validation")
    with op.batch_alter_table("audit_item_result", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_audit_item_result_stage_valid"), type_="check")
        batch_op.alter_column("expected_behavior", existing_type=sqlmodel.sql.sqltypes.AutoString(length=20),
                              type_=sqlmodel.sql.sqltypes.AutoString(length=10), existing_nullable=False)
        for name in ("judgement", "grader", "prompt", "stage", "item_digest"):
            batch_op.drop_column(name)
    with op.batch_alter_table("audit_run", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_audit_run_status_valid"), type_="check")
        batch_op.create_check_constraint("status_valid", f"status IN {OLD_STATUSES}")
        for name in ("lease_expires_at", "lease_owner", "attempts", "second_stage", "results_digest", "reserve_digest",
                     "reserve_source", "policy_digest", "review", "grader", "operating_characteristics", "plan"):
            batch_op.drop_column(name)
