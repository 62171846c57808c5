"""Alembic environment: runs revisions under an advisory lock and records each in schema_migrations."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from alembic import context
from alembic.runtime.migration import MigrationContext, MigrationInfo
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

# Every domain's models, so Base.metadata is complete for autogenerate and `alembic check`:
# the one place that needs them all (a domain's models join this list as the domain arrives).
from userapi.audit import models as audit_models  # noqa: F401
from userapi.auth import models as auth_models  # noqa: F401
from userapi.core.config import get_settings
from userapi.db.base import Base
from userapi.db.migrate import MIGRATION_LOCK_KEY
from userapi.keys import models as keys_models  # noqa: F401
from userapi.mail import models as mail_models  # noqa: F401
from userapi.mfa import models as mfa_models  # noqa: F401
from userapi.roles import models as roles_models  # noqa: F401
from userapi.users import models as users_models  # noqa: F401

config = context.config
target_metadata = Base.metadata
Progress = Callable[[str], None]


class _History:
    """Writes one schema_migrations row per applied revision (removes it on downgrade).

    executed_at is the server's clock_timestamp() when the revision finished: now() would be the start
    of the one transaction all revisions run in, the same moment for every row. Revisions applied
    before the table exists in this run are kept, with their own time, and written as soon as it does.
    """

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.pending: list[tuple[str, str, datetime, int]] = []
        self.start()

    def start(self) -> None:
        """Mark the moment the next revision starts (called once the migration lock is held)."""
        self.last = time.perf_counter()

    def __call__(self, ctx: MigrationContext, step: MigrationInfo, heads: Any, run_args: Any) -> None:
        now = time.perf_counter()
        duration_ms = round((now - self.last) * 1000)
        self.last = now
        if not step.is_migration:
            return
        conn = ctx.connection
        assert conn is not None
        revision = str(step.up_revision_id)
        description = (getattr(step.up_revision, "doc", "") or "").strip()
        table_exists, finished_at = conn.execute(
            text("SELECT to_regclass('schema_migrations'), clock_timestamp()")
        ).one()
        if step.is_upgrade:
            self.pending.append((revision, description, finished_at, duration_ms))
            if table_exists:
                for row in self.pending:
                    conn.execute(
                        text(
                            "INSERT INTO schema_migrations (revision, description, executed_at,"
                            " duration_ms, applied_by) VALUES (:r, :d, :at, :ms, current_user)"
                            " ON CONFLICT (revision) DO UPDATE SET executed_at = excluded.executed_at,"
                            " duration_ms = excluded.duration_ms, description = excluded.description,"
                            " applied_by = excluded.applied_by"
                        ),
                        {"r": row[0], "d": row[1], "at": row[2], "ms": row[3]},
                    )
                self.pending.clear()
            verb = "applied"
        else:
            if table_exists:
                conn.execute(text("DELETE FROM schema_migrations WHERE revision = :r"), {"r": revision})
            verb = "reverted"
        if self.progress:
            self.progress(f"{verb} {revision} {description} ({duration_ms} ms)")


def _include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    # schema_migrations belongs to the migration machinery, not to the models.
    return not (type_ == "table" and name == "schema_migrations")


def _run(connection: Connection) -> None:
    history = _History(config.attributes.get("progress"))
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=_include_object,
        on_version_apply=history,
        compare_type=True,
    )
    with context.begin_transaction():
        # Transaction-scoped: released by the commit (or rollback) that ends this run.
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        history.start()  # the wait for another migrator's lock is no part of the first revision's time
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


def _url() -> str:
    url = config.attributes.get("database_url")
    return str(url) if url else get_settings().async_database_url


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
    else:
        asyncio.run(_run_async(_url()))
