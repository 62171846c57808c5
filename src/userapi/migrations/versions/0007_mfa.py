"""MFA: TOTP factors, recovery codes, pending second-factor sign-ins; users.mfa_enabled; session amr

Revision ID: 0007
Revises: 0003
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Kept in sync by the mfa service, so the per-request user query needs no join (hot path).
    op.add_column(
        "users", sa.Column("mfa_enabled", sa.Boolean(), server_default=sa.text("false"), nullable=False)
    )
    # How each session signed in (RFC 8176 values), shown in the session list.
    op.add_column(
        "refresh_tokens",
        sa.Column(
            "amr",
            postgresql.ARRAY(sa.String(16)),
            server_default=sa.text("'{pwd}'::varchar(16)[]"),
            nullable=False,
        ),
    )
    op.create_table(
        "mfa_totp_factors",
        sa.Column("user_id", sa.UUID(as_uuid=True), nullable=False),
        sa.Column("secret_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_step", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("user_id", name="pk_mfa_totp_factors"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_mfa_totp_factors_user_id_users", ondelete="CASCADE"
        ),
    )
    op.create_table(
        "mfa_recovery_codes",
        sa.Column("id", sa.UUID(as_uuid=True), server_default=sa.text("uuid_generate_v4()"), nullable=False),
        sa.Column("user_id", sa.UUID(as_uuid=True), nullable=False),
        sa.Column("code_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_mfa_recovery_codes"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_mfa_recovery_codes_user_id_users", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("user_id", "code_hash", name="uq_mfa_recovery_codes_user_id"),
    )
    op.create_table(
        "mfa_challenges",
        sa.Column("id", sa.UUID(as_uuid=True), server_default=sa.text("uuid_generate_v4()"), nullable=False),
        sa.Column("user_id", sa.UUID(as_uuid=True), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("token_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("spent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_mfa_challenges"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_mfa_challenges_user_id_users", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("token_hash", name="uq_mfa_challenges_token_hash"),
    )
    op.create_index("ix_mfa_challenges_expires_at", "mfa_challenges", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_mfa_challenges_expires_at", table_name="mfa_challenges")
    op.drop_table("mfa_challenges")
    op.drop_table("mfa_recovery_codes")
    op.drop_table("mfa_totp_factors")
    op.drop_column("refresh_tokens", "amr")
    op.drop_column("users", "mfa_enabled")
