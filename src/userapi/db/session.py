"""Engine and session lifecycle: one engine per process, one session and one commit per request."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, TypeVar

import asyncpg
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import make_transient_to_detached

from userapi.core.config import Settings
from userapi.core.exceptions import AppError

T = TypeVar("T")


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


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's session and its one commit point.

    Used with `scope="function"` so the commit happens before the response is sent: a failed
    commit becomes an error response, never a 2xx for a write that was lost.
    """
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session:
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


async def fetchrow(session: AsyncSession, sql: str, *args: object) -> asyncpg.Record | None:
    """Run one statement straight on asyncpg, on the session's connection (for hot paths).

    A lost connection is reported to SQLAlchemy (so the pool replaces it and the connections
    pooled alongside it) and raised as the outage it is, which the error handlers answer with 503.
    """
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: asyncpg.Connection = raw.driver_connection
    try:
        return await driver.fetchrow(sql, *args)
    except (
        OSError,
        asyncpg.PostgresConnectionError,
        asyncpg.InterfaceError,
        # The server ended this backend (fast or immediate shutdown, crash) or is not up yet.
        asyncpg.AdminShutdownError,
        asyncpg.CrashShutdownError,
        asyncpg.CannotConnectNowError,
        # Seen when the server ends a pooled connection: its FATAL message leaves the protocol
        # mid-error before the closed socket is noticed ("cannot switch to state 12 ...").
        asyncpg.InternalClientError,
    ) as exc:
        await connection.invalidate(exc)
        # Connections pooled alongside it are just as dead after a server restart.
        await connection.engine.dispose(close=False)
        raise ConnectionError(f"database connection lost: {type(exc).__name__}") from exc


def attach_loaded(session: AsyncSession, instance: T) -> T:
    """Make an object built from a fetched row persistent in the session, as if the ORM loaded it."""
    make_transient_to_detached(instance)
    session.add(instance)
    return instance


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
