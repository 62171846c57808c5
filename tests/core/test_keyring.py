"""The per-process key ring: what verifiers are served is never older than the refresh interval."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from userapi.core.keyring import KeyEntry, KeyRing

INTERVAL = 0.2  # seconds


def _entry(kid: str) -> KeyEntry:
    return KeyEntry(kid=kid, algorithm="EdDSA", verify_key=object(), signing_key=None, activates_at=0.0)


class _Store:
    """A loader whose key set changes when the test says so (a rotation made by another process)."""

    def __init__(self) -> None:
        self.kids = ["first"]
        self.loads = 0

    async def load(self) -> Sequence[KeyEntry]:
        self.loads += 1
        await asyncio.sleep(0.01)  # a real load waits for the database
        return [_entry(kid) for kid in self.kids]


def _kids(ring: KeyRing) -> set[str]:
    return {kid for kid in ("first", "second") if ring.verifier(kid) is not None}


async def test_documents_wait_for_a_due_reload_and_requests_do_not() -> None:
    store = _Store()
    ring = KeyRing(loader=store.load, refresh_seconds=INTERVAL)
    await ring.load()
    store.kids = ["first", "second"]  # published elsewhere after this process loaded
    await asyncio.sleep(INTERVAL * 1.5)

    # An authenticated request never waits: it goes on with the set it has.
    await ring.maybe_refresh()
    assert _kids(ring) == {"first"}
    # The JWKS and discovery documents do wait (here for the reload the request started).
    await ring.refresh_now_if_due()
    assert _kids(ring) == {"first", "second"}
    assert store.loads == 2


async def test_a_fresh_set_is_served_without_a_reload() -> None:
    store = _Store()
    ring = KeyRing(loader=store.load, refresh_seconds=60)
    await ring.load()
    started = time.monotonic()
    await ring.refresh_now_if_due()
    assert store.loads == 1
    assert time.monotonic() - started < 0.01


async def test_a_due_reload_with_none_running_is_made_and_awaited() -> None:
    store = _Store()
    ring = KeyRing(loader=store.load, refresh_seconds=INTERVAL)
    await ring.load()
    store.kids = ["second"]
    await asyncio.sleep(INTERVAL * 1.5)
    await ring.refresh_now_if_due()
    assert _kids(ring) == {"second"}
    assert store.loads == 2
