"""review as committees do it: checklist drafts and the conditions a vote proposes

``checklist_draft`` keeps a reviewer's half-done checklist (one row per case, round and reviewer) until it is
submitted; ``vote.proposed_conditions`` keeps the conditions a member proposes with a vote. ``vote`` is append-only:
the column is added in place (no SQLite batch rebuild, which would drop its triggers).

Revision ID: 0007_committee_review
Revises: 0006_conflict_corrections
Create Date: 2026-12-28
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # noqa: F401  (the columns use its AutoString)
from alembic import op

revision: str = "0007_committee_review"
down_revision: str | None = "0006_conflict_corrections"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "checklist_draft",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("submission_id", sa.Integer(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("reviewer_id", sa.Integer(), nullable=False),
        sa.Column("checklist_id", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("checklist_version", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("answers", sa.JSON(), nullable=False),
        sa.Column("saved_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["reviewer_id"], ["user_account.id"],
                                name=op.f("fk_checklist_draft_reviewer_id_user_account")),
        sa.ForeignKeyConstraint(["submission_id"], ["submission.id"],
                                name=op.f("fk_checklist_draft_submission_id_submission")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checklist_draft")),
        sa.UniqueConstraint("submission_id", "round", "reviewer_id", name="uq_checklist_draft_reviewer"),
    )
    op.create_index(op.f("ix_checklist_draft_reviewer_id"), "checklist_draft", ["reviewer_id"], unique=False)
    op.create_index(op.f("ix_checklist_draft_submission_id"), "checklist_draft", ["submission_id"], unique=False)
    op.add_column("vote", sa.Column("proposed_conditions", sqlmodel.sql.sqltypes.AutoString(), nullable=False,
                                    server_default=""))


def downgrade() -> None:
    op.drop_column("vote", "proposed_conditions")
    op.drop_index(op.f("ix_checklist_draft_submission_id"), table_name="checklist_draft")
    op.drop_index(op.f("ix_checklist_draft_reviewer_id"), table_name="checklist_draft")
    op.drop_table("checklist_draft")
