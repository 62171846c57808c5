"""Programmatic Alembic (upgrade, downgrade, history) and the cheap head check used by readiness and serve."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_LOCATION = "userapi:migrations"
# The advisory lock key migrations/env.py holds while migrating: every process migrating this database
# serialises on it, so replicas started together migrate once and none fails.
MIGRATION_LOCK_KEY = 0x75736572617069  # "userapi"
VERSIONS_DIR = Path(__file__).resolve().parent.parent / "migrations" / "versions"
_REVISION = re.compile(r"^revision: str = ['\"](\w+)['\"]", re.M)
_DOWN_REVISION = re.compile(r"^down_revision: [^=]+= (.+)$", re.M)
_QUOTED = re.compile(r"['\"](\w+)['\"]")
MigrationStep = Callable[[str, str, Callable[[str], None] | None], None]


def alembic_config(async_url: str | None = None, progress: Callable[[str], None] | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", MIGRATIONS_LOCATION)
    if async_url:
        cfg.attributes["database_url"] = async_url
    if progress:
        cfg.attributes["progress"] = progress
    return cfg


@lru_cache
def head_revisions() -> frozenset[str]:
    """The revisions the code expects the database to be at, read from the version files.

    Read with a regex rather than Alembic: readiness and `serve` check this on start-up, and
    importing Alembic (with Mako) costs a worker half a second and ~10 MB. Alembic itself is
    loaded only when the database differs; a test checks both readings agree.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in VERSIONS_DIR.glob("*.py"):
        text_ = path.read_text(encoding="utf-8")
        if match := _REVISION.search(text_):
            revisions.add(match.group(1))
            if down := _DOWN_REVISION.search(text_):
                parents.update(_QUOTED.findall(down.group(1)))
    return frozenset(revisions - parents)


def alembic_head_revisions() -> frozenset[str]:
    from alembic.script import ScriptDirectory

    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


def upgrade(async_url: str, revision: str = "head", progress: Callable[[str], None] | None = None) -> None:
    from alembic import command

    command.upgrade(alembic_config(async_url, progress), revision)


def downgrade(async_url: str, revision: str, progress: Callable[[str], None] | None = None) -> None:
    from alembic import command

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
    from alembic.script import ScriptDirectory

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
