"""The users table."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    FetchedValue,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from userapi.db.base import Base
from userapi.roles.constants import DEFAULT_ROLE, ROLE_NAME_MAX_CHARS


class User(Base):
    __tablename__ = "users"
    # Fetch server-generated values (id, timestamps) with RETURNING instead of a later lazy load.
    __mapper_args__ = {"eager_defaults": True}
    __table_args__ = (
        # Keyset pagination of the admin listing walks this index.
        Index("ix_users_created_at_id", "created_at", "id"),
        # The same with a role filter; also serves the foreign key's checks when a role is deleted
        # and the per-role counts of GET /api/v1/roles (index-only).
        Index("ix_users_role_created_at_id", "role", "created_at", "id"),
    )

    # The database invents ids (uuid-ossp); the app never does.
    id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), primary_key=True, server_default=text("uuid_generate_v4()")
    )
    # The UNIQUE constraint's own index serves lookups; no second index (by design).
    # COLLATE "C": byte order lets that same index serve `email LIKE 'prefix%'` (admin search).
    email: Mapped[str] = mapped_column(String(320, collation="C"), nullable=False, unique=True)
    password_hash: Mapped[str] = mapped_column(Text, nullable=False)
    full_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # A role's name (roles.name): each account holds exactly one role. RESTRICT: a role in use
    # cannot be deleted (the service answers 409 role_in_use before the database has to).
    role: Mapped[str] = mapped_column(
        String(ROLE_NAME_MAX_CHARS),
        ForeignKey("roles.name", ondelete="RESTRICT"),
        nullable=False,
        server_default=text(f"'{DEFAULT_ROLE.value}'"),
    )
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    # When the owner last proved the address is theirs (a mailed link); null until then.
    email_verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Bumped when every session of the user must end; access tokens carry the value they saw.
    token_version: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    # A confirmed TOTP factor exists: kept in sync by the mfa service, so the per-request user
    # query (one statement, hot path) shows it without a join.
    mfa_enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    # Kept current by the `users_set_updated_at` trigger (see the migration).
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True),
        nullable=False,
        server_default=func.now(),
        server_onupdate=FetchedValue(),
    )
