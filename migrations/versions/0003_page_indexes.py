"""submission: one index for cases by state, newest first (replaces the index on state alone)

The dashboard shows the newest cases of each state and lists filter by state and sort by the last change:
with (state, updated_at, id) the database reads the first rows of the index instead of sorting every case
in the state. Its first column serves the counts by state that the index on state alone served.

Revision ID: 0003_page_indexes
Revises: 0002_dossier_event_seq
Create Date: 2026-11-25
"""
from collections.abc import Sequence

from alembic import op

revision: str = "0003_page_indexes"
down_revision: str | None = "0002_dossier_event_seq"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain CREATE / DROP INDEX: SQLite needs no table rebuild for them (a rebuild would drop triggers).
    op.create_index("ix_submission_state_updated_at", "submission", ["state", "updated_at", "id"], unique=False)
    op.drop_index("ix_submission_state", table_name="submission")


def downgrade() -> None:
    op.create_index("ix_submission_state", "submission", ["state"], unique=False)
    op.drop_index("ix_submission_state_updated_at", table_name="submission")
