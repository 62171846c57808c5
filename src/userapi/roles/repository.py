"""SQL for the roles table: the only place its statements are built."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from userapi.roles.models import Role


class RoleRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def all(self) -> list[Role]:
        return list(await self.session.scalars(select(Role).order_by(Role.name)))

    async def get(self, name: str) -> Role | None:
        return await self.session.get(Role, name)

    async def lock(self, name: str, *, deleting: bool = False) -> Role | None:
        """The role row, freshly read and locked.

        To change it: FOR NO KEY UPDATE, which assignments (their foreign-key check takes KEY SHARE)
        do not wait for. To delete it: FOR UPDATE, which waits for assignments in flight (so they are
        counted) and keeps new ones out until this transaction ends.
        """
        stmt = select(Role).where(Role.name == name).with_for_update(key_share=not deleting)
        return (await self.session.scalars(stmt.execution_options(populate_existing=True))).first()

    async def share_for_assignment(self, name: str) -> Role | None:
        """The role row under a KEY SHARE lock (what the users.role foreign key takes anyway): a role
        deleted meanwhile is seen as missing here, instead of failing the assignment's insert."""
        stmt = select(Role).where(Role.name == name).with_for_update(read=True, key_share=True)
        return (await self.session.scalars(stmt)).first()

    async def lock_administrative(self, required: Collection[str]) -> list[str]:
        """Names of the roles granting every permission in `required` (or all permissions), their rows
        locked until the transaction ends.

        This is where every decision of the last-admin rule is serialised: each one takes these
        locks first, and `admin` (all permissions) is always among them, so a second decision waits
        for the first to commit and then reads the accounts as they are. A role whose permissions
        the first one changed is re-checked when its lock is granted (PostgreSQL re-evaluates the
        WHERE clause on the new row version). FOR NO KEY UPDATE, in name order: no deadlock between
        deciders, and ordinary assignments (their foreign-key check takes KEY SHARE) never wait.
        """
        stmt = (
            select(Role.name)
            .where(or_(Role.all_permissions.is_(True), Role.permissions.contains(sorted(required))))
            .order_by(Role.name)
            .with_for_update(key_share=True)
        )
        return list(await self.session.scalars(stmt))

    async def insert_unless_taken(self, values: dict[str, Any]) -> Role | None:
        """Insert a role; None when the name exists (the primary key decides races)."""
        stmt = insert(Role).values(**values).on_conflict_do_nothing(index_elements=["name"]).returning(Role)
        return (await self.session.scalars(stmt)).first()

    async def flush(self) -> None:
        await self.session.flush()

    async def delete(self, name: str) -> None:
        await self.session.execute(delete(Role).where(Role.name == name))
