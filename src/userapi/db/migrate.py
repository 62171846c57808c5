"""Programmatic Alembic: upgrade, downgrade, history and the head check used by readiness and serve."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

MIGRATIONS_LOCATION = "userapi:migrations"
MigrationStep = Callable[[str, str, Callable[[str], None] | None], None]


def alembic_config(async_url: str | None = None, progress: Callable[[str], None] | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", MIGRATIONS_LOCATION)
    if async_url:
        cfg.attributes["database_url"] = async_url
    if progress:
        cfg.attributes["progress"] = progress
    return cfg


@lru_cache
def head_revisions() -> frozenset[str]:
    """The revisions the code expects the database to be at (read from the package once)."""
    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


def upgrade(async_url: str, revision: str = "head", progress: Callable[[str], None] | None = None) -> None:
    command.upgrade(alembic_config(async_url, progress), revision)


def downgrade(async_url: str, revision: str, progress: Callable[[str], None] | None = None) -> None:
    command.downgrade(alembic_config(async_url, progress), revision)


async def current_revisions(conn: AsyncConnection) -> frozenset[str]:
    exists = (await conn.execute(text("SELECT to_regclass('alembic_version')"))).scalar()
    if exists is None:
        return frozenset()
    rows = await conn.execute(text("SELECT version_num FROM alembic_version"))
    return frozenset(str(r[0]) for r in rows)


async def missing_revisions(conn: AsyncConnection) -> list[str]:
    """Revisions between the database and the code's head; empty when the database is current."""
    current = await current_revisions(conn)
    heads = head_revisions()
    if current == heads:
        return []
    script = ScriptDirectory.from_config(alembic_config())
    lower = tuple(current) or None
    try:
        steps = script.iterate_revisions(tuple(heads), lower or "base")
        return sorted(s.revision for s in steps if s.revision not in current)
    except Exception:  # current is unknown to this code (newer database): report it as is
        return sorted(heads - current) or sorted(current)


@dataclass(frozen=True)
class HistoryRow:
    revision: str
    description: str
    executed_at: datetime
    duration_ms: int | None
    applied_by: str | None


async def history(conn: AsyncConnection) -> list[HistoryRow]:
    exists = (await conn.execute(text("SELECT to_regclass('schema_migrations')"))).scalar()
    if exists is None:
        return []
    rows = await conn.execute(
        text(
            "SELECT revision, description, executed_at, duration_ms, applied_by "
            "FROM schema_migrations ORDER BY executed_at, revision"
        )
    )
    return [HistoryRow(*row) for row in rows]
