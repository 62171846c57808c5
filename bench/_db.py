"""The bench's own PostgreSQL: BENCH_DATABASE_URL, or a private cluster under .data/bench-postgres."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from bench._common import REPO, BenchError, log
from bench._procs import userapi_argv

DATABASE = "userapi_bench"


def with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


class BenchPostgres:
    """Where the bench databases live; creates and drops them by name."""

    def __init__(self) -> None:
        self.external = os.environ.get("BENCH_DATABASE_URL") or None
        self.root = REPO / ".data" / "bench-postgres"
        self.admin_url = ""

    @property
    def source(self) -> str:
        return "BENCH_DATABASE_URL" if self.external else f"embedded cluster ({self.root})"

    def start(self) -> None:
        if self.external:
            self.admin_url = self.external
            return
        from userapi.db.embedded import EmbeddedPostgres

        log(f"starting the bench PostgreSQL cluster under {self.root}")
        # The maintenance database: the bench creates and drops its own next to it.
        self.admin_url = EmbeddedPostgres(self.root, database="postgres").start()

    def server_pids(self) -> list[int]:
        """The bench cluster's postmaster (its backends are its children); none for an external server."""
        if self.external:
            return []
        from userapi.db.embedded import EmbeddedPostgres

        pid = EmbeddedPostgres(self.root, database="postgres").status().pid
        return [pid] if pid else []

    def stop(self) -> None:
        if self.external:
            return
        from userapi.db.embedded import EmbeddedPostgres

        EmbeddedPostgres(self.root, database="postgres").stop()

    def _run(self, *statements: str) -> list[Any]:
        async def go() -> list[Any]:
            conn = await asyncpg.connect(self.admin_url)
            try:
                return [await conn.fetch(s) for s in statements]
            finally:
                await conn.close()

        return asyncio.run(go())

    def create(self, name: str) -> str:
        """A fresh, empty database; returns its URL."""
        quoted = '"' + name.replace('"', '""') + '"'
        self._run(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)", f"CREATE DATABASE {quoted}")
        return with_database(self.admin_url, name)

    def drop(self, name: str) -> None:
        self._run('DROP DATABASE IF EXISTS "{}" WITH (FORCE)'.format(name.replace('"', '""')))

    def server_version(self) -> str:
        return str(self._run("SHOW server_version")[0][0][0])


def migrate(env: dict[str, str], run_dir: Path) -> float:
    """Run `userapi migrate` with the given environment; returns its wall time in seconds."""
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    proc = subprocess.run(
        [*userapi_argv(), "migrate"], env=env, cwd=run_dir, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise BenchError(f"userapi migrate failed: {(proc.stderr or proc.stdout).strip()[-400:]}")
    return elapsed
