"""SQL for the audit trail: the only place `auth_events` statements are built."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from userapi.audit.models import AuthEvent


class AuditRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(
        self,
        type_: str,
        *,
        user_id: uuid.UUID | None,
        actor_id: uuid.UUID | None,
        ip: str | None,
        user_agent: str | None,
        detail: dict[str, Any],
    ) -> None:
        self.session.add(
            AuthEvent(
                type=type_, user_id=user_id, actor_id=actor_id, ip=ip, user_agent=user_agent, detail=detail
            )
        )
        await self.session.flush()

    async def page(
        self, *, limit: int, before_id: int | None, user_id: uuid.UUID | None, type_: str | None
    ) -> list[AuthEvent]:
        # Newest first, keyset on the sequential id.
        stmt = select(AuthEvent).order_by(AuthEvent.id.desc()).limit(limit)
        if before_id is not None:
            stmt = stmt.where(AuthEvent.id < before_id)
        if user_id is not None:
            stmt = stmt.where(AuthEvent.user_id == user_id)
        if type_ is not None:
            stmt = stmt.where(AuthEvent.type == type_)
        return list(await self.session.scalars(stmt))
