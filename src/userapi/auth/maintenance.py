"""Housekeeping of the auth tables for operators: pruning spent refresh tokens in batches."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from userapi.auth.repository import AuthRepository


class SessionMaintenance:
    def __init__(self, repository: AuthRepository) -> None:
        self.repository = repository

    @classmethod
    def for_session(cls, session: AsyncSession) -> SessionMaintenance:
        return cls(AuthRepository(session))

    async def prune_batch(self, *, revoked_before: datetime, batch_size: int) -> int:
        """Delete up to `batch_size` expired or long-revoked refresh tokens; returns how many."""
        return await self.repository.prune(revoked_before=revoked_before, batch_size=batch_size)
