"""Housekeeping of the auth tables for operators: pruning spent refresh tokens and expired mailed tokens."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from userapi.auth.repository import AccountTokenRepository, AuthRepository


class SessionMaintenance:
    def __init__(self, repository: AuthRepository, account_tokens: AccountTokenRepository) -> None:
        self.repository = repository
        self.account_tokens = account_tokens

    @classmethod
    def for_session(cls, session: AsyncSession) -> SessionMaintenance:
        return cls(AuthRepository(session), AccountTokenRepository(session))

    async def prune_batch(self, *, revoked_before: datetime, batch_size: int) -> int:
        """Delete up to `batch_size` expired or long-revoked refresh tokens; returns how many."""
        return await self.repository.prune(revoked_before=revoked_before, batch_size=batch_size)

    async def prune_account_tokens_batch(self, *, batch_size: int) -> int:
        """Delete up to `batch_size` expired mailed tokens (reset, verification, change); how many."""
        return await self.account_tokens.prune(batch_size=batch_size)
