"""Seeds the users table for the listing scenario with COPY (asyncpg), with a progress bar on stderr.

Rows: random UUIDs, emails `u<7 digits>@example.com` whose numbers are a random permutation of the
row numbers (so email order says nothing about creation order, as in real data), one precomputed
bcrypt hash for all, and created_at spread evenly over the last three years.

    python -m bench.seed postgresql://... --count 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

COLUMNS = ("id", "email", "password_hash", "full_name", "created_at", "updated_at")
SPAN = timedelta(days=3 * 365)
BATCH = 50_000


def email_for(number: int) -> str:
    return f"u{number:07d}@example.com"


def prefix_matching(count: int, rows: int = 100) -> str:
    """An email prefix that matches `rows` (10 or 100) seeded users, wherever they sit in time."""
    digits = 1 if rows == 10 else 2
    return email_for(count // 2)[: 8 - digits]


def _rows(count: int, password_hash: str, seed: int) -> Iterator[list[tuple[Any, ...]]]:
    rng = random.Random(seed)
    numbers = list(range(count))
    rng.shuffle(numbers)
    start = datetime.now(UTC) - SPAN
    step_us = SPAN / timedelta(microseconds=1) / max(count, 1)
    for first in range(0, count, BATCH):
        batch: list[tuple[Any, ...]] = []
        for i in range(first, min(first + BATCH, count)):
            created = start + timedelta(microseconds=int((i + rng.random() * 0.5) * step_us))
            user_id = uuid.UUID(int=rng.getrandbits(128), version=4)
            batch.append((user_id, email_for(numbers[i]), password_hash, f"Bench User {i}", created, created))
        yield batch


class _Progress:
    def __init__(self, total: int, label: str) -> None:
        self.total, self.label, self.started = total, label, time.perf_counter()
        self.tty = sys.stderr.isatty()
        self.last_tenth = -1

    def update(self, done: int) -> None:
        fraction = done / self.total if self.total else 1.0
        elapsed = time.perf_counter() - self.started
        bar = "#" * int(fraction * 30)
        text = f"{self.label} [{bar:<30}] {fraction:4.0%} {done:,}/{self.total:,} {elapsed:5.1f} s"
        if self.tty:
            print("\r" + text, end="" if done < self.total else "\n", file=sys.stderr, flush=True)
        elif int(fraction * 10) != self.last_tenth:  # logs get one line per tenth, not a \r storm
            self.last_tenth = int(fraction * 10)
            print(text, file=sys.stderr, flush=True)


async def seed_users(dsn: str, count: int, password_hash: str, seed: int = 5) -> float:
    """COPY `count` users into the table, then VACUUM ANALYZE it; returns the seconds it took."""
    started = time.perf_counter()
    progress = _Progress(count, "seeding users")
    conn = await asyncpg.connect(dsn)
    try:
        done = 0
        progress.update(0)
        for batch in _rows(count, password_hash, seed):
            await conn.copy_records_to_table("users", records=batch, columns=COLUMNS)
            done += len(batch)
            progress.update(done)
        # Planner statistics and the visibility map, as a table of that size would have in production.
        await conn.execute("VACUUM (ANALYZE) users")
    finally:
        await conn.close()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dsn", help="postgresql:// URL of a migrated userapi database")
    parser.add_argument("--count", type=int, default=1_000_000)
    args = parser.parse_args()
    from bench._common import PASSWORD
    from userapi.core.security import hash_password_sync

    seconds = asyncio.run(seed_users(args.dsn, args.count, hash_password_sync(PASSWORD, 12)))
    print(f"seeded {args.count:,} users in {seconds:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
