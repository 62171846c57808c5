"""A plain asyncpg pool for single-statement hot reads (the per-request user check), outside the ORM."""

from __future__ import annotations

import asyncio
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


class _FairAcquire:
    """Takes a connection from `pool` in the order requests asked for one (first come, first served).

    Why: asyncpg's pool hands connections out through an asyncio.Queue, which lets a newcomer
    take a connection released a moment ago ahead of the request that was woken for it; that
    one queues again at the back. Under load (64 requests in flight, 10 connections) a few
    requests lost their turn several times: p99 was 7-11x p50 while the bare floor's was 2-3x.
    The semaphore (FIFO since Python 3.11) admits as many requests as the pool has connections,
    in arrival order, so the pool's own queue never makes anyone wait. Waiting at most `timeout`
    seconds in all (TimeoutError, a 503, as the pool's own timeout was).
    """

    __slots__ = ("_connection", "_gate", "_pool", "_timeout")

    def __init__(self, pool: asyncpg.Pool, gate: asyncio.Semaphore, timeout: float) -> None:
        self._pool, self._gate, self._timeout = pool, gate, timeout
        self._connection: asyncpg.pool.PoolConnectionProxy | None = None

    async def __aenter__(self) -> asyncpg.Connection:
        async with asyncio.timeout(self._timeout):
            await self._gate.acquire()
            try:
                self._connection = await self._pool.acquire()
            except BaseException:
                self._gate.release()
                raise
        return self._connection  # a proxy with the Connection interface

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self._connection is not None:
                await self._pool.release(self._connection)
        finally:
            self._connection = None
            # After the connection is back in the pool: the next request admitted finds it there.
            self._gate.release()


def bind_to_pool(reads: ReadPool, pool: asyncpg.Pool, timeout: float) -> None:
    gate = asyncio.Semaphore(pool.get_max_size())

    async def expire() -> None:
        await pool.expire_connections()

    reads.bind(lambda: _FairAcquire(pool, gate, timeout), expire)
