"""SQL for the users table: the only place its statements are built."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from userapi.users.constants import Role
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
        role: Role | None,
        email_prefix: str | None,
    ) -> list[User]:
        # Keyset pagination on (created_at, id): a deep page costs what the first one does.
        stmt = select(User).order_by(User.created_at, User.id).limit(limit)
        if after is not None:
            stmt = stmt.where(tuple_(User.created_at, User.id) > tuple_(*after))
        if role is not None:
            stmt = stmt.where(User.role == role)
        if email_prefix:
            # email is COLLATE "C", so its unique index serves this prefix match.
            stmt = stmt.where(User.email.like(_like_prefix(email_prefix), escape="\\"))
        return list(await self.session.scalars(stmt))

    async def lock_active_admin_ids(self) -> list[uuid.UUID]:
        """Lock every active admin row, so concurrent demotions are decided one at a time."""
        stmt = (
            select(User.id)
            .where(User.role == Role.admin, User.is_active.is_(True))
            .order_by(User.id)
            .with_for_update()
        )
        return list(await self.session.scalars(stmt))

    async def attach(self, user: User) -> User:
        """The session's copy of a user read outside it (the current user), without a query."""
        return await self.session.merge(user, load=False)

    async def flush(self) -> None:
        await self.session.flush()

    async def bump_token_version(self, user: User) -> None:
        """Increment atomically in SQL (concurrent bumps never collapse into one)."""
        result = await self.session.execute(
            update(User)
            .where(User.id == user.id)
            .values(token_version=User.token_version + 1)
            .returning(User.token_version)
            .execution_options(synchronize_session=False)
        )
        # Record the new value as loaded, not as a pending change to write back.
        set_committed_value(user, "token_version", result.scalar_one())

    async def delete(self, user_id: uuid.UUID) -> None:
        await self.session.execute(delete(User).where(User.id == user_id))

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
