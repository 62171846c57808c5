"""Engine and session lifecycle: one engine per process, one session and one commit per request."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from userapi.core.config import Settings
from userapi.core.exceptions import AppError
from userapi.core.runtime import RuntimeDep


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4().hex}__"


def build_engine(settings: Settings, *, pool_size: int | None = None) -> AsyncEngine:
    """An asyncpg engine whose pool never overflows.

    Overflow connections are opened and closed under bursts, which collapsed throughput at 64
    clients; a fixed pool queues instead, and a pool timeout becomes a fast 503.
    """
    connect_args: dict[str, object] = {
        "timeout": settings.db_pool_timeout,
        "command_timeout": 30,
        # 0 disables asyncpg's prepared-statement cache (needed behind PgBouncer in transaction mode).
        "statement_cache_size": settings.db_statement_cache_size,
        "server_settings": {"application_name": "userapi"},
    }
    if settings.db_statement_cache_size == 0:
        # Behind PgBouncer in transaction mode successive transactions may land on different
        # server connections: SQLAlchemy must not cache statements and must name them uniquely.
        connect_args["prepared_statement_cache_size"] = 0
        connect_args["prepared_statement_name_func"] = _unique_statement_name
    return create_async_engine(
        settings.async_database_url,
        pool_size=pool_size or settings.db_pool_size,
        max_overflow=0,
        pool_timeout=settings.db_pool_timeout,
        pool_recycle=3600,
        # No pre-ping: it costs a round trip per checkout; lost connections are detected on use.
        connect_args=connect_args,
        # Statement parameters (hashes, token digests, emails) never appear in errors or logs.
        hide_parameters=True,
    )


def build_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def get_session(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    """The request's session and its one commit point.

    Used with `scope="function"` so the commit happens before the response is sent: a failed
    commit becomes an error response, never a 2xx for a write that was lost.
    """
    async with runtime.sessionmaker() as session:
        try:
            yield session
        except AppError as exc:
            if exc.keeps_writes:
                await session.commit()
            else:
                await session.rollback()
            raise
        except BaseException:
            await session.rollback()
            raise
        await session.commit()


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


@asynccontextmanager
async def session_scope(settings: Settings) -> AsyncIterator[AsyncSession]:
    """A session for the CLI: commits on success, rolls back on error, disposes the engine."""
    engine = build_engine(settings, pool_size=1)
    try:
        async with build_sessionmaker(engine)() as session:
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise
    finally:
        await engine.dispose()
