"""SQL for the users table: the only place its statements are built."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.exc import StaleDataError

from userapi.users.models import User


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: uuid.UUID) -> User | None:
        return await self.session.get(User, user_id)

    async def get_by_email(self, email: str) -> User | None:
        return (await self.session.scalars(select(User).where(User.email == email))).first()

    async def insert_unless_email_taken(self, values: dict[str, Any]) -> User | None:
        """Insert a user; None when the email exists.

        ON CONFLICT lets the UNIQUE constraint decide races: a concurrent second insert waits for
        the first to commit and then inserts nothing, instead of failing the transaction.
        """
        stmt = (
            insert(User).values(**values).on_conflict_do_nothing(constraint="uq_users_email").returning(User)
        )
        return (await self.session.scalars(stmt)).first()

    async def page(
        self,
        *,
        limit: int,
        after: tuple[datetime, uuid.UUID] | None,
        role: str | None,
        email_prefix: str | None,
        is_active: bool | None = None,
    ) -> list[User]:
        # Keyset pagination on (created_at, id): a deep page costs what the first one does.
        stmt = select(User).order_by(User.created_at, User.id).limit(limit)
        if after is not None:
            stmt = stmt.where(tuple_(User.created_at, User.id) > tuple_(*after))
        if role is not None:
            stmt = stmt.where(User.role == role)
        if is_active is not None:
            stmt = stmt.where(User.is_active.is_(is_active))
        if email_prefix:
            # email is COLLATE "C", so its unique index serves this prefix match.
            stmt = stmt.where(User.email.like(_like_prefix(email_prefix), escape="\\"))
        return list(await self.session.scalars(stmt))

    async def active_holders(self, role_names: Collection[str]) -> list[tuple[uuid.UUID, str]]:
        """(id, role) of the active users holding one of `role_names`.

        Not locked: callers decide the last-admin rule while holding the locks of those roles'
        rows (see RoleRepository.lock_administrative), which every such decision takes first.
        """
        if not role_names:
            return []
        stmt = (
            select(User.id, User.role)
            .where(User.role.in_(sorted(role_names)), User.is_active.is_(True))
            .order_by(User.id)
        )
        return [(row.id, row.role) for row in await self.session.execute(stmt)]

    async def count_by_role(self) -> dict[str, int]:
        """How many users hold each role (index-only on ix_users_role_created_at_id)."""
        stmt = select(User.role, func.count().label("holders")).group_by(User.role)
        return {row.role: row.holders for row in await self.session.execute(stmt)}

    async def attach(self, user: User) -> User:
        """The session's copy of a user read outside it (the current user), without a query."""
        return await self.session.merge(user, load=False)

    async def flush(self) -> bool:
        """Write pending changes; False when a changed user no longer exists (deleted concurrently)."""
        try:
            await self.session.flush()
        except StaleDataError:
            return False
        return True

    async def bump_token_version(self, user: User) -> bool:
        """Increment atomically in SQL (concurrent bumps never collapse into one); False when the
        user no longer exists."""
        result = await self.session.execute(
            update(User)
            .where(User.id == user.id)
            .values(token_version=User.token_version + 1)
            .returning(User.token_version)
            .execution_options(synchronize_session=False)
        )
        version = result.scalar_one_or_none()
        if version is None:
            return False
        # Record the new value as loaded, not as a pending change to write back.
        set_committed_value(user, "token_version", version)
        return True

    async def delete(self, user_id: uuid.UUID) -> bool:
        """Delete a user; False when there was none (deleted concurrently)."""
        result = await self.session.execute(delete(User).where(User.id == user_id))
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def set_email_verified(self, user: User) -> None:
        """Mark the address verified (kept if it already was)."""
        result = await self.session.execute(
            update(User)
            .where(User.id == user.id)
            .values(email_verified_at=func.coalesce(User.email_verified_at, func.now()))
            .returning(User.email_verified_at, User.updated_at)
            .execution_options(synchronize_session=False)
        )
        verified_at, updated_at = result.one()
        set_committed_value(user, "email_verified_at", verified_at)
        set_committed_value(user, "updated_at", updated_at)

    async def set_verified_email_unless_taken(self, user: User, email: str) -> bool:
        """Change the address (verified now); False when another account has it.

        In a savepoint: the UNIQUE constraint decides a race with a sign-up, and losing it rolls
        back this statement only, not the caller's transaction.
        """
        try:
            async with self.session.begin_nested():
                result = await self.session.execute(
                    update(User)
                    .where(User.id == user.id)
                    .values(email=email, email_verified_at=func.now())
                    .returning(User.email_verified_at, User.updated_at)
                    .execution_options(synchronize_session=False)
                )
                verified_at, updated_at = result.one()
        except IntegrityError:
            return False
        set_committed_value(user, "email", email)
        set_committed_value(user, "email_verified_at", verified_at)
        set_committed_value(user, "updated_at", updated_at)
        return True
