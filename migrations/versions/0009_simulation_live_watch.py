"""simulation and live watch: de-identified query sets, a gate run's answers to them, sampled real interactions

``query_set`` and ``simulation_query`` hold an institution's own queries (de-identified before any row is made);
``simulation_result`` a gate run's answers to them, append-only like ``audit_item_result``; ``live_watch`` and
``interaction`` a deployment's judged samples of real use and its control chart. ``api_token`` gains the scope
``watch`` (one deployment's interactions, nothing else) and ``incident.source`` the value ``live_watch``: their CHECK
constraints change (SQLite rebuilds both tables; neither has triggers).

Revision ID: 0009_simulation_live_watch
Revises: 0008_decision_letters
Create Date: 2026-12-07
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # noqa: F401  (the columns use its AutoString)
from alembic import op

revision: str = "0009_simulation_live_watch"
down_revision: str | None = "0008_decision_letters"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Rows that are never edited once written: a frozen query set and a run's answers.
APPEND_ONLY = ("query_set", "simulation_query", "simulation_result")
SCOPES_BEFORE, SCOPES_AFTER = ("read", "submit"), ("read", "submit", "watch")
SOURCES_BEFORE = ("clinician", "reaudit", "integrity")
SOURCES_AFTER = (*SOURCES_BEFORE, "live_watch")


def _in(column: str, values: Sequence[str]) -> str:
    return "{} IN ({})".format(column, ", ".join(f"'{v}'" for v in values))


def _append_only(table: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        # governance_append_only() is created by 0001_initial
        op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                   f"FOR EACH ROW EXECUTE FUNCTION governance_append_only()")
        op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION governance_append_only()")
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                       f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {action} refused'); END")


def _drop_append_only(table: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{action.lower()}")


def _checks(scopes: Sequence[str], sources: Sequence[str], watch: bool) -> None:
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_api_token_scope_valid"), type_="check")
        batch_op.create_check_constraint(op.f("ck_api_token_scope_valid"), _in("scope", scopes))
        if watch:
            batch_op.add_column(sa.Column("deployment_id", sa.Integer(), nullable=True))
            batch_op.create_foreign_key(op.f("fk_api_token_deployment_id_deployment"), "deployment",
                                        ["deployment_id"], ["id"])
            batch_op.create_check_constraint(op.f("ck_api_token_watch_has_deployment"),
                                             "(scope = 'watch') = (deployment_id IS NOT NULL)")
        else:
            batch_op.drop_constraint(op.f("ck_api_token_watch_has_deployment"), type_="check")
            batch_op.drop_constraint(op.f("fk_api_token_deployment_id_deployment"), type_="foreignkey")
            batch_op.drop_column("deployment_id")
    with op.batch_alter_table("incident", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_incident_source_valid"), type_="check")
        batch_op.create_check_constraint(op.f("ck_incident_source_valid"), _in("source", sources))


def upgrade() -> None:
    op.create_table('query_set',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('digest', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('source_format', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('deid_version', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('removed', sa.JSON(), nullable=False),
    sa.Column('profile', sa.JSON(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.CheckConstraint('version >= 1', name=op.f('ck_query_set_version_positive')),
    sa.ForeignKeyConstraint(['created_by_id'], ['user_account.id'], name=op.f('fk_query_set_created_by_id_user_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_query_set')),
    sa.UniqueConstraint('name', 'version', name='uq_query_set_name_version')
    )
    with op.batch_alter_table('query_set', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_query_set_name'), ['name'], unique=False)

    op.create_table('interaction',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('deployment_id', sa.Integer(), nullable=False),
    sa.Column('prompt', sa.Text(), nullable=False),
    sa.Column('answer', sa.Text(), nullable=False),
    sa.Column('deid_version', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('removed', sa.JSON(), nullable=False),
    sa.Column('asked_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('received_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('graded_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('harm', sa.Integer(), nullable=True),
    sa.Column('label', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('hazardous', sa.Boolean(), nullable=True),
    sa.Column('grader', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('judgement', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['deployment_id'], ['deployment.id'], name=op.f('fk_interaction_deployment_id_deployment')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_interaction'))
    )
    with op.batch_alter_table('interaction', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_interaction_deployment_id'), ['deployment_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_interaction_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_interaction_graded_at'), ['graded_at'], unique=False)

    op.create_table('simulation_query',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('query_set_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('prompt', sa.Text(), nullable=False),
    sa.Column('context', sa.Text(), nullable=False),
    sa.Column('department', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('lang', sqlmodel.sql.sqltypes.AutoString(length=5), nullable=False),
    sa.Column('asked_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['query_set_id'], ['query_set.id'], name=op.f('fk_simulation_query_query_set_id_query_set')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_simulation_query')),
    sa.UniqueConstraint('query_set_id', 'position', name='uq_simulation_query_position')
    )
    with op.batch_alter_table('simulation_query', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_simulation_query_query_set_id'), ['query_set_id'], unique=False)

    op.create_table('live_watch',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('deployment_id', sa.Integer(), nullable=False),
    sa.Column('sample_rate', sa.Float(), nullable=False),
    sa.Column('retention_days', sa.Integer(), nullable=False),
    sa.Column('baseline_rate', sa.Float(), nullable=False),
    sa.Column('alarm_rate', sa.Float(), nullable=False),
    sa.Column('threshold', sa.Float(), nullable=False),
    sa.Column('statistic', sa.Float(), nullable=False),
    sa.Column('graded', sa.Integer(), nullable=False),
    sa.Column('hazards', sa.Integer(), nullable=False),
    sa.Column('chart', sa.JSON(), nullable=False),
    sa.Column('signalled_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('incident_id', sa.Integer(), nullable=True),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.CheckConstraint('retention_days >= 1', name=op.f('ck_live_watch_retention_positive')),
    sa.CheckConstraint('sample_rate > 0 AND sample_rate <= 1', name=op.f('ck_live_watch_sample_rate_range')),
    sa.ForeignKeyConstraint(['deployment_id'], ['deployment.id'], name=op.f('fk_live_watch_deployment_id_deployment')),
    sa.ForeignKeyConstraint(['incident_id'], ['incident.id'], name=op.f('fk_live_watch_incident_id_incident')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_live_watch')),
    sa.UniqueConstraint('deployment_id', name=op.f('uq_live_watch_deployment_id'))
    )
    op.create_table('simulation_result',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('query_id', sa.Integer(), nullable=False),
    sa.Column('variant', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('side', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('answer', sa.Text(), nullable=False),
    sa.Column('harm', sa.Integer(), nullable=True),
    sa.Column('label', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('hazardous', sa.Boolean(), nullable=False),
    sa.Column('refused', sa.Boolean(), nullable=False),
    sa.Column('valid', sa.Boolean(), nullable=False),
    sa.Column('judgement', sa.JSON(), nullable=False),
    sa.Column('error', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.CheckConstraint("side IN ('candidate', 'approved')", name=op.f('ck_simulation_result_side_valid')),
    sa.ForeignKeyConstraint(['query_id'], ['simulation_query.id'], name=op.f('fk_simulation_result_query_id_simulation_query')),
    sa.ForeignKeyConstraint(['run_id'], ['audit_run.id'], name=op.f('fk_simulation_result_run_id_audit_run')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_simulation_result')),
    sa.UniqueConstraint('run_id', 'query_id', 'variant', 'side', name='uq_simulation_result_key')
    )
    with op.batch_alter_table('simulation_result', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_simulation_result_run_id'), ['run_id'], unique=False)

    _checks(SCOPES_AFTER, SOURCES_AFTER, watch=True)
    for table in APPEND_ONLY:
        _append_only(table)


def downgrade() -> None:
    for table in APPEND_ONLY:
        _drop_append_only(table)
    _checks(SCOPES_BEFORE, SOURCES_BEFORE, watch=False)
    with op.batch_alter_table('simulation_result', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_simulation_result_run_id'))

    op.drop_table('simulation_result')
    op.drop_table('live_watch')
    with op.batch_alter_table('simulation_query', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_simulation_query_query_set_id'))

    op.drop_table('simulation_query')
    with op.batch_alter_table('interaction', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_interaction_graded_at'))
        batch_op.drop_index(batch_op.f('ix_interaction_expires_at'))
        batch_op.drop_index(batch_op.f('ix_interaction_deployment_id'))

    op.drop_table('interaction')
    with op.batch_alter_table('query_set', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_query_set_name'))

    op.drop_table('query_set')
