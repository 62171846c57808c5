"""Roles and permissions as data: the roles table, users.role references it

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25

Upgrade: creates `roles` with the built-in `user` (no permission) and `admin` (every permission,
as a flag, so permissions added to the code later are included), turns the `users.role` enum
into a reference to `roles.name` keeping every user's role, and drops the enum type.

Downgrade: restores the enum; an account holding a custom role falls back to `user` (the old
schema has no other role to give it), then drops `roles`.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

user_role = postgresql.ENUM("user", "admin", name="user_role", create_type=False)


def upgrade() -> None:
    op.create_table(
        "roles",
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("description", sa.String(200), server_default=sa.text("''"), nullable=False),
        sa.Column("built_in", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("all_permissions", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "permissions",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'::text[]"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_roles"),
        sa.CheckConstraint("name ~ '^[a-z][a-z0-9_-]{1,62}$'", name="ck_roles_name_format"),
        sa.CheckConstraint("NOT all_permissions OR built_in", name="ck_roles_all_permissions_built_in"),
        sa.CheckConstraint("array_position(permissions, NULL) IS NULL", name="ck_roles_permissions_not_null"),
    )
    # set_updated_at() comes from 0001.
    op.execute(
        "CREATE TRIGGER roles_set_updated_at BEFORE UPDATE ON roles "
        "FOR EACH ROW EXECUTE FUNCTION set_updated_at()"
    )
    op.execute(
        "INSERT INTO roles (name, description, built_in, all_permissions) VALUES "
        "('user', 'Every account: its own profile, password and sessions; no admin permission', true, false), "
        "('admin', 'Every permission, including ones added later', true, true)"
    )
    # The enum becomes the role's name; every user keeps the role it had.
    op.execute("ALTER TABLE users ALTER COLUMN role DROP DEFAULT")
    op.alter_column(
        "users",
        "role",
        type_=sa.String(63),
        existing_type=user_role,
        existing_nullable=False,
        postgresql_using="role::text",
        server_default=sa.text("'user'"),
    )
    op.create_foreign_key("fk_users_role_roles", "users", "roles", ["role"], ["name"], ondelete="RESTRICT")
    op.create_index("ix_users_role_created_at_id", "users", ["role", "created_at", "id"])
    user_role.drop(op.get_bind(), checkfirst=False)


def downgrade() -> None:
    user_role.create(op.get_bind(), checkfirst=False)
    op.drop_index("ix_users_role_created_at_id", table_name="users")
    op.drop_constraint("fk_users_role_roles", "users", type_="foreignkey")
    op.execute("ALTER TABLE users ALTER COLUMN role DROP DEFAULT")
    # Custom roles do not exist in the old schema: their holders fall back to `user`.
    op.alter_column(
        "users",
        "role",
        type_=user_role,
        existing_type=sa.String(63),
        existing_nullable=False,
        postgresql_using="(CASE WHEN role IN ('user', 'admin') THEN role ELSE 'user' END)::user_role",
        server_default=sa.text("'user'"),
    )
    op.drop_table("roles")
