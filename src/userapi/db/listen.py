"""A PostgreSQL LISTEN connection that wakes a waiter on NOTIFY; reconnects, and degrades to polling."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg

logger = logging.getLogger("userapi.db")


class Listener:
    """Sets `event` whenever `channel` is notified.

    A convenience, never a dependency: the waiter also polls, so a lost connection (restart,
    PgBouncer in transaction mode, which cannot LISTEN) only makes wake-ups slower.
    """

    def __init__(self, dsn: str, channel: str, event: asyncio.Event) -> None:
        self.dsn = dsn
        self.channel = channel
        self.event = event
        self._connection: asyncpg.Connection | None = None

    @property
    def connected(self) -> bool:
        return self._connection is not None and not self._connection.is_closed()

    async def ensure(self) -> None:
        """Connect and LISTEN unless already listening; failures are logged, not raised."""
        if self.connected:
            return
        await self.close()
        try:
            connection = await asyncpg.connect(
                self.dsn, timeout=5, server_settings={"application_name": "userapi-listen"}
            )
            await connection.add_listener(self.channel, self._notified)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            logger.warning("cannot LISTEN %s (%s); polling instead", self.channel, type(exc).__name__)
            return
        self._connection = connection
        # A notification may have been missed while not listening.
        self.event.set()

    def _notified(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        self.event.set()

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), timeout=2)
