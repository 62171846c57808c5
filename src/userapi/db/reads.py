"""A plain asyncpg pool for single-statement hot reads (the per-request user check), outside the ORM."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

import asyncpg
from sqlalchemy.engine import make_url

from userapi.core.config import Settings

Acquire = Callable[[], AbstractAsyncContextManager[asyncpg.Connection]]

# What a connection the server dropped (restart, crash, shutdown) looks like from asyncpg.
LOST_CONNECTION: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    # Seen when the server ends a pooled connection: its FATAL message leaves the protocol
    # mid-error before the closed socket is noticed ("cannot switch to state 12 ...").
    asyncpg.InternalClientError,
)


class ReadPool:
    """Runs one statement on a connection from `acquire`; a lost connection becomes a 503.

    Why not SQLAlchemy: every authenticated request runs one primary-key select, and the
    session, its greenlet hops and result processing cost more than the query (see bench/).
    Bound in the app's lifespan (to an asyncpg pool) or by tests (to their own connection).
    """

    def __init__(self) -> None:
        self._acquire: Acquire | None = None
        self._on_lost: Callable[[], Awaitable[None]] | None = None

    def bind(self, acquire: Acquire, on_lost: Callable[[], Awaitable[None]] | None = None) -> None:
        self._acquire, self._on_lost = acquire, on_lost

    async def fetchrow(self, sql: str, *args: object) -> asyncpg.Record | None:
        assert self._acquire is not None, "ReadPool used before bind()"
        try:
            async with self._acquire() as connection:
                return await connection.fetchrow(sql, *args)
        except LOST_CONNECTION as exc:
            if self._on_lost is not None:
                await self._on_lost()  # the pooled siblings are just as dead after a restart
            raise ConnectionError(f"database connection lost: {type(exc).__name__}") from exc


async def _keep_as_is(connection: asyncpg.Connection) -> None:
    return None


def read_dsn(settings: Settings) -> str:
    """DATABASE_URL as plain asyncpg wants it (no SQLAlchemy driver name)."""
    dsn = make_url(settings.async_database_url).set(drivername="postgresql")
    return dsn.render_as_string(hide_password=False)


async def create_pool(settings: Settings) -> asyncpg.Pool:
    """The asyncpg pool behind ReadPool: opened lazily, at most DB_READ_POOL_SIZE connections."""
    return await asyncpg.create_pool(
        dsn=read_dsn(settings),
        min_size=0,
        max_size=settings.db_read_pool_size,
        max_inactive_connection_lifetime=300,
        timeout=settings.db_pool_timeout,
        command_timeout=30,
        statement_cache_size=settings.db_statement_cache_size,
        server_settings={"application_name": "userapi"},
        # The default reset (RESET ALL, UNLISTEN, ...) costs a round trip on every release, and
        # these connections only ever run single SELECTs that change no session state.
        reset=_keep_as_is,
    )


def bind_to_pool(reads: ReadPool, pool: asyncpg.Pool, timeout: float) -> None:
    async def expire() -> None:
        await pool.expire_connections()

    reads.bind(lambda: pool.acquire(timeout=timeout), expire)
