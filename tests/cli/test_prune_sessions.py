"""`userapi prune-sessions` as a real process: expired and long-revoked refresh tokens go, in batches."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.helpers import run_cli, server_env, unique_email

# (label, expires_at offset, revoked_at offset or None): which rows must go and which must stay.
DOOMED = [
    ("expired-1", "-1 day", None),
    ("expired-2", "-1 minute", None),
    ("expired-3", "-30 days", "-31 days"),
    ("revoked-long-ago-1", "+5 days", "-8 days"),
    ("revoked-long-ago-2", "+1 day", "-30 days"),
]
KEPT = [
    ("live-1", "+14 days", None),
    ("live-2", "+1 hour", None),
    ("revoked-recently", "+5 days", "-1 day"),
]
# Offsets are text cast to interval in SQL; a unique random hash per row (never a real token).
_PLANT = text(
    "INSERT INTO refresh_tokens (user_id, family_id, token_hash, expires_at, revoked_at, user_agent) "
    "VALUES (:u, uuid_generate_v4(), sha256(convert_to(gen_random_uuid()::text, 'UTF8')), "
    "now() + CAST(CAST(:expires AS text) AS interval), "
    "now() + CAST(CAST(:revoked AS text) AS interval), :label)"
)
PRUNABLE = "expires_at < now() OR revoked_at < now() - interval '7 days'"


@pytest.fixture
async def owner(engine: AsyncEngine) -> AsyncIterator[uuid.UUID]:
    """A committed user whose refresh-token rows the test plants; removed (with them) afterwards."""
    async with engine.begin() as conn:
        user_id = await conn.scalar(
            text("INSERT INTO users (email, password_hash) VALUES (:e, 'x') RETURNING id"),
            {"e": unique_email("prune")},
        )
    assert user_id is not None
    yield user_id
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM users WHERE id = :u"), {"u": user_id})


async def plant(engine: AsyncEngine, user_id: uuid.UUID, rows: list[tuple[str, str, str | None]]) -> None:
    async with engine.begin() as conn:
        for label, expires, revoked in rows:
            await conn.execute(_PLANT, {"u": user_id, "label": label, "expires": expires, "revoked": revoked})


async def labels(engine: AsyncEngine, user_id: uuid.UUID) -> set[str]:
    async with engine.connect() as conn:
        rows = await conn.scalars(
            text("SELECT user_agent FROM refresh_tokens WHERE user_id = :u"), {"u": user_id}
        )
        return set(rows.all())


async def prunable(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text(f"SELECT count(*) FROM refresh_tokens WHERE {PRUNABLE}")) or 0)


async def test_prune_deletes_expired_and_long_revoked_tokens_in_batches(
    database_url: str, engine: AsyncEngine, owner: uuid.UUID
) -> None:
    await plant(engine, owner, DOOMED + KEPT)
    expected = await prunable(engine)  # ours, plus any another test left committed
    assert expected >= len(DOOMED)

    result = await asyncio.to_thread(
        run_cli, "prune-sessions", "--batch-size", "2", env=server_env(database_url)
    )
    assert result.returncode == 0, result.stderr
    match = re.search(r"deleted (\d+) refresh tokens", result.stdout)
    assert match, result.stdout
    # More rows than one batch holds: every batch ran until one came back short.
    assert int(match.group(1)) == expected > 2
    assert await labels(engine, owner) == {label for label, _, _ in KEPT}
    assert await prunable(engine) == 0


async def test_prune_with_a_batch_size_dividing_the_work_exactly_stops(
    database_url: str, engine: AsyncEngine, owner: uuid.UUID
) -> None:
    await plant(engine, owner, DOOMED[:4] + KEPT)
    expected = await prunable(engine)
    batch = "2" if expected % 2 == 0 else "1"
    result = await asyncio.to_thread(
        run_cli, "prune-sessions", "--batch-size", batch, env=server_env(database_url)
    )
    assert result.returncode == 0, result.stderr
    assert f"deleted {expected} refresh tokens" in result.stdout
    assert await labels(engine, owner) == {label for label, _, _ in KEPT}


async def test_prune_keeps_revoked_tokens_for_the_days_asked(
    database_url: str, engine: AsyncEngine, owner: uuid.UUID
) -> None:
    await plant(
        engine, owner, [("revoked-3-days", "+5 days", "-3 days"), ("revoked-1-day", "+5 days", "-1 day")]
    )
    result = await asyncio.to_thread(
        run_cli, "prune-sessions", "--revoked-days", "2", env=server_env(database_url)
    )
    assert result.returncode == 0, result.stderr
    assert await labels(engine, owner) == {"revoked-1-day"}


async def test_prune_refuses_a_bad_batch_size(database_url: str) -> None:
    result = await asyncio.to_thread(
        run_cli, "prune-sessions", "--batch-size", "0", env=server_env(database_url)
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
