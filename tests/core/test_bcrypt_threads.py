"""bcrypt runs in at most `threads` worker threads at once per process (one per core by default)."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from userapi.core import security
from userapi.core.security import PasswordHasher


@pytest.fixture
def running() -> dict[str, int]:
    return {"now": 0, "peak": 0}


def _slow(running: dict[str, int]) -> object:
    lock = threading.Lock()

    def work(*args: object) -> str:
        with lock:
            running["now"] += 1
            running["peak"] = max(running["peak"], running["now"])
        time.sleep(0.02)
        with lock:
            running["now"] -= 1
        return "$2b$04$" + "x" * 53

    return work


async def test_at_most_threads_bcrypt_runs_at_once(
    running: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(security, "hash_password_sync", _slow(running))
    monkeypatch.setattr(security, "verify_password_sync", _slow(running))
    hasher = PasswordHasher(rounds=4, threads=2)

    await asyncio.gather(
        *(hasher.hash("a password") for _ in range(6)),
        *(hasher.verify("a password", "$2b$04$" + "y" * 53) for _ in range(6)),
    )
    assert running["peak"] == 2


def test_one_thread_per_core_by_default() -> None:
    assert PasswordHasher(rounds=4).threads == (os.cpu_count() or 1)


async def test_the_limit_follows_the_event_loop() -> None:
    """A limiter belongs to one loop: a hasher used from a second loop makes its own."""
    hasher = PasswordHasher(rounds=4, threads=1)
    first = hasher._bcrypt_threads()
    assert hasher._bcrypt_threads() is first

    def in_another_loop() -> object:
        async def take() -> object:
            return hasher._bcrypt_threads()

        return asyncio.run(take())

    other = await asyncio.to_thread(in_another_loop)
    assert other is not first
