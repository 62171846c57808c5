"""Record which migrations ran and when in schema_migrations

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Alembic's alembic_version keeps only the head; this keeps every applied revision and when.
    # Rows are written by migrations/env.py (on_version_apply), not by the revisions themselves.
    op.create_table(
        "schema_migrations",
        sa.Column("revision", sa.String(64), primary_key=True),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("executed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("applied_by", sa.Text(), nullable=True, server_default=sa.text("current_user")),
    )
    # Backfill revisions applied in an earlier run, before this table existed. Those applied in
    # this same run are rewritten by env.py with their real time and duration.
    op.execute(
        "INSERT INTO schema_migrations (revision, description, duration_ms) "
        "VALUES ('0001', 'Enable uuid-ossp and create users (backfilled)', NULL) "
        "ON CONFLICT DO NOTHING"
    )


def downgrade() -> None:
    op.drop_table("schema_migrations")
