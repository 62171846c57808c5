"""The roles table: a role's name, description, whether it is built in, and the permissions it grants."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, DateTime, FetchedValue, String, Text, func, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from userapi.db.base import Base
from userapi.roles.constants import ROLE_DESCRIPTION_MAX_CHARS, ROLE_NAME_MAX_CHARS, ROLE_NAME_PATTERN


class Role(Base):
    __tablename__ = "roles"
    __table_args__ = (
        CheckConstraint(f"name ~ '{ROLE_NAME_PATTERN}'", name="name_format"),
        # Only a built-in role (admin) follows the catalogue as it grows.
        CheckConstraint("NOT all_permissions OR built_in", name="all_permissions_built_in"),
        CheckConstraint("array_position(permissions, NULL) IS NULL", name="permissions_not_null"),
    )
    __mapper_args__ = {"eager_defaults": True}

    # The stable identifier users.role references; never renamed (no API renames it).
    name: Mapped[str] = mapped_column(String(ROLE_NAME_MAX_CHARS), primary_key=True)
    description: Mapped[str] = mapped_column(
        String(ROLE_DESCRIPTION_MAX_CHARS), nullable=False, server_default=text("''")
    )
    built_in: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    # True: every permission of the catalogue, including ones added to the code later (admin).
    # A flag, not a stored list, so it never goes stale.
    all_permissions: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    # Permission names (an array, not a join table): the per-request check reads a user's role and
    # its permissions with one primary-key lookup. Membership in the catalogue is checked by the
    # service, not by a constraint: the catalogue lives in code and grows without a migration.
    permissions: Mapped[list[str]] = mapped_column(
        ARRAY(Text), nullable=False, server_default=text("'{}'::text[]")
    )
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    # Kept current by the `roles_set_updated_at` trigger (see the migration).
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True),
        nullable=False,
        server_default=func.now(),
        server_onupdate=FetchedValue(),
    )
