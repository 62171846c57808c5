"""The CLI as an operator meets it: real processes, one clear line on every expected failure."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from tests.fixtures.helpers import REVISIONS, free_port, random_name, run_cli, running_server, server_env


def assert_one_line_failure(result: object, *fragments: str) -> None:
    assert result.returncode != 0  # type: ignore[attr-defined]
    stderr = result.stderr.strip()  # type: ignore[attr-defined]
    assert "Traceback" not in stderr
    assert len(stderr.splitlines()) == 1, stderr
    for fragment in fragments:
        assert fragment in stderr, stderr


def test_malformed_database_url(database_url: str) -> None:
    result = run_cli("migrate", env=server_env(database_url, DATABASE_URL="mysql://x@y/z"))
    assert_one_line_failure(result, "DATABASE_URL")


def test_unreachable_database(database_url: str) -> None:
    url = f"postgresql://u:p@127.0.0.1:{free_port()}/db"
    for command in (["migrate"], ["serve"], ["db", "history"]):
        result = run_cli(*command, env=server_env(database_url, DATABASE_URL=url, DB_POOL_TIMEOUT="2"))
        assert_one_line_failure(result)
        assert "127.0.0.1" in result.stderr or "reach" in result.stderr or "refused" in result.stderr


def test_production_without_secret(database_url: str) -> None:
    result = run_cli("serve", env=server_env(database_url, ENVIRONMENT="production", JWT_SECRET=""))
    assert_one_line_failure(result, "JWT_SECRET")


def test_port_in_use(database_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--port", str(port), env=server_env(database_url))
    assert_one_line_failure(result, str(port))


def test_serve_refuses_a_database_behind_head_and_migrate_fixes_it(empty_database_url: str) -> None:
    env = server_env(empty_database_url)
    assert_one_line_failure(run_cli("serve", env=env), "0001", "userapi migrate")
    partial = run_cli("migrate", "--revision", "0001", env=env)
    assert partial.returncode == 0, partial.stderr
    assert "applied 0001" in partial.stdout
    assert_one_line_failure(run_cli("serve", env=env), "0002", "0007")
    full = run_cli("migrate", env=env)
    assert full.returncode == 0, full.stderr
    assert "applied 0002" in full.stdout
    assert "applied 0003" in full.stdout
    for revision in REVISIONS[3:]:
        assert f"applied {revision}" in full.stdout
    down = run_cli("downgrade", env=env)
    assert down.returncode == 0, down.stderr
    assert f"reverted {REVISIONS[-1]}" in down.stdout


def test_migration_failure_is_one_line(empty_database_url: str, server_url: str) -> None:
    # A role that may not create extensions stands in for a server without uuid-ossp: the
    # failure must still be one clear line naming the extension.
    role = random_name("weak")
    import asyncio

    async def make_role() -> None:
        conn = await asyncpg.connect(empty_database_url)
        try:
            await conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw'")
            await conn.execute(f"GRANT ALL ON SCHEMA public TO {role}")
        finally:
            await conn.close()

    async def drop_role() -> None:
        conn = await asyncpg.connect(empty_database_url)
        try:
            await conn.execute(f"DROP OWNED BY {role}")
            await conn.execute(f"DROP ROLE {role}")
        finally:
            await conn.close()

    asyncio.run(make_role())
    try:
        weak = make_url(empty_database_url).set(username=role, password="pw").render_as_string(False)
        result = run_cli("migrate", env=server_env(weak))
        assert_one_line_failure(result, "uuid-ossp")
    finally:
        asyncio.run(drop_role())


def test_real_server_answers_ready_and_docs(database_url: str) -> None:
    with running_server(server_env(database_url)) as base:
        assert httpx.get(f"{base}/health/ready", timeout=30).status_code == 200
        assert httpx.get(f"{base}/docs", timeout=30).status_code == 200
        spec = httpx.get(f"{base}/openapi.json", timeout=30).json()
        assert "/api/v1/auth/login" in spec["paths"]


def test_db_url_prints_the_configured_url(database_url: str) -> None:
    result = run_cli("db", "url", env=server_env(database_url))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == database_url


def test_db_history_prints_a_table(database_url: str) -> None:
    result = run_cli("db", "history", env=server_env(database_url))
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split()[:3] == ["revision", "executed_at", "duration_ms"]
    assert [r.split()[0] for r in rows] == REVISIONS


def test_development_without_a_secret_shares_one_across_workers(database_url: str) -> None:
    # Without JWT_SECRET development invents one; every worker must use the same, or a token
    # issued by one worker is refused by the other.
    env = server_env(database_url, ENVIRONMENT="development", JWT_SECRET="")
    with running_server(env, "--workers", "2") as base:
        email = f"dev-secret-{os.getpid()}@example.com"
        body = {"email": email, "password": "correct horse battery staple"}
        assert httpx.post(f"{base}/api/v1/auth/register", json=body, timeout=30).status_code == 201
        token = httpx.post(f"{base}/api/v1/auth/login", json=body, timeout=30).json()["access_token"]
        statuses = {
            # A new connection each time, spread over both workers.
            httpx.get(
                f"{base}/api/v1/users/me", headers={"Authorization": f"Bearer {token}"}, timeout=30
            ).status_code
            for _ in range(20)
        }
    assert statuses == {200}


def _into_a_closed_pipe(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a command whose stdout's reader has already gone, as `userapi keys list | head -0`."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "userapi", *args],
            env=env,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)


def test_a_reader_that_goes_away_is_not_reported_as_a_failure(database_url: str) -> None:
    # Seen as "error: cannot reach the database: [Errno 32] Broken pipe" (and "migration failed"),
    # although the database was fine and `migrate` had done its work.
    env = server_env(database_url)
    with ThreadPoolExecutor(2) as pool:
        results = list(
            pool.map(lambda args: _into_a_closed_pipe(*args, env=env), [["keys", "list"], ["migrate"]])
        )
    for result in results:
        assert (result.returncode, result.stderr) == (141, ""), result


def test_a_file_error_names_the_file_not_the_database(database_url: str, tmp_path: Path) -> None:
    # Seen as "cannot reach the database: [Errno 20] Not a directory: ...": every OSError was taken
    # for an unreachable database, a DATA_DIR under a regular file included.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = {k: v for k, v in server_env(database_url).items() if k != "DATABASE_URL"}
    result = run_cli(
        "db", "status", env={**env, "ENVIRONMENT": "development", "DATA_DIR": str(blocker / "x")}
    )
    assert_one_line_failure(result, "Not a directory", str(blocker))
    assert "database" not in result.stderr
