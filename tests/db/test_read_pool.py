"""The read pool hands connections to requests in the order they asked (no barging), within its timeout."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from userapi.db.reads import ReadPool, bind_to_pool


class QueuePool:
    """asyncpg's pool as far as waiting goes: free connections in an asyncio.Queue, release puts back."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.free: asyncio.Queue[str] = asyncio.Queue()
        for n in range(size):
            self.free.put_nowait(f"connection {n}")

    def get_max_size(self) -> int:
        return self.size

    async def acquire(self) -> str:
        return await self.free.get()

    async def release(self, connection: str) -> None:
        self.free.put_nowait(connection)

    async def expire_connections(self) -> None:
        return None


async def _arrivals(acquire: Any) -> list[str]:
    """Request 0 holds the one connection; 1 and 2 queue for it; request 3 arrives just as 0 lets go
    (already scheduled when the connection goes back: what a request parsed in the same loop
    iteration does under load). Returns the order in which they got the connection."""
    served: list[str] = []
    waiting = asyncio.Event()

    async def request(name: str, hold: float = 0.0) -> None:
        async with acquire():
            served.append(name)
            await asyncio.sleep(hold)

    async def first() -> None:
        async with acquire():
            served.append("0")
            await waiting.wait()
            late = asyncio.get_running_loop().create_task(request("3"))
        await late

    tasks = [asyncio.create_task(first())]
    await asyncio.sleep(0)
    tasks += [asyncio.create_task(request(name)) for name in ("1", "2")]
    await asyncio.sleep(0.01)  # 1 and 2 are waiting now
    waiting.set()
    await asyncio.gather(*tasks)
    return served


async def test_a_bare_queue_lets_a_newcomer_take_a_waiter_s_turn() -> None:
    """The control: what asyncpg's queue does on its own (the cause of the wide p99 under load)."""
    pool = QueuePool(1)

    class Acquire:
        async def __aenter__(self) -> str:
            self.connection = await pool.acquire()
            return self.connection

        async def __aexit__(self, *exc: object) -> None:
            await pool.release(self.connection)

    served = await _arrivals(Acquire)
    # The newcomer went first, and the waiter woken for the connection queued again behind the
    # other one: it lost its turn twice.
    assert served == ["0", "3", "2", "1"]


async def test_requests_get_connections_in_arrival_order() -> None:
    pool = QueuePool(1)
    reads = ReadPool()
    bind_to_pool(reads, pool, timeout=5)  # type: ignore[arg-type]  # duck-typed pool
    assert await _arrivals(reads._acquire) == ["0", "1", "2", "3"]


async def test_waiting_past_the_timeout_is_timeout_error_and_frees_nothing() -> None:
    pool = QueuePool(1)
    reads = ReadPool()
    bind_to_pool(reads, pool, timeout=0.05)  # type: ignore[arg-type]
    assert reads._acquire is not None
    async with reads._acquire():
        with pytest.raises(TimeoutError):
            async with reads._acquire():
                pass
    # The timed-out request took no admission with it: the connection is usable again at once.
    async with reads._acquire() as connection:
        assert connection == "connection 0"
    assert pool.free.qsize() == 1


async def test_at_most_pool_size_requests_hold_connections(database_url: str) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=0, max_size=2)
    try:
        reads = ReadPool()
        bind_to_pool(reads, pool, timeout=5)
        holding = peak = 0

        async def one() -> None:
            nonlocal holding, peak
            assert reads._acquire is not None
            async with reads._acquire() as connection:
                holding += 1
                peak = max(peak, holding)
                await connection.fetchval("SELECT pg_sleep(0.01)")
                holding -= 1

        await asyncio.gather(*(one() for _ in range(12)))
        assert peak == 2
    finally:
        await pool.close()
