"""Shutdown: SIGTERM during load drains every request in flight (none is cut mid-response) and
`userapi serve` then exits with status 0.

"In flight" is made certain, not hoped for: every login is held inside its handler by a lock on the
users table until SIGTERM has been sent, and pg_stat_activity shows them all waiting. (uvicorn closes
a connection whose request it has not read yet, so a request still in a socket buffer at the moment
of SIGTERM gets no answer; those are not in flight in the service, and a balancer must stop sending
before the signal.)"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.fixtures.helpers import API, PASSWORD, free_port, server_env, unique_email
from tests.fixtures.load import CLIENT_LIMITS, HANG, NO_THROTTLE

LOGINS = 24
GRACE = 20  # timeout_graceful_shutdown in `userapi serve`


@contextmanager
def _serve(env: dict[str, str], log: Path, *args: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`userapi serve` as a real process, ready; the test itself stops it. Killed if still alive after."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "userapi", "serve", "--port", str(port), *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"server exited with {process.returncode}: {log.read_text()}"
            try:
                if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"server not ready in 60 s: {log.read_text()}"
            time.sleep(0.1)
        yield process, base
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("workers", [1, 2])
async def test_sigterm_drains_in_flight_logins_then_exits_0(
    database_url: str, tmp_path: Path, workers: int
) -> None:
    env = server_env(database_url, BCRYPT_ROUNDS="10", DB_POOL_SIZE=str(LOGINS + 8), **NO_THROTTLE)
    log = tmp_path / "serve.log"
    with _serve(env, log, "--workers", str(workers)) as (process, base):
        async with httpx.AsyncClient(base_url=base, limits=CLIENT_LIMITS, timeout=HANG) as http:
            emails = [unique_email("drain") for _ in range(4)]
            for email in emails:
                created = await http.post(f"{API}/auth/register", json={"email": email, "password": PASSWORD})
                assert created.status_code == 201, created.text

            async def login(i: int) -> tuple[int | None, dict[str, Any] | str, float]:
                body = {"email": emails[i % len(emails)], "password": PASSWORD}
                try:
                    response = await http.post(f"{API}/auth/login", json=body)
                except httpx.HTTPError as exc:  # e.g. the connection closed mid-response
                    return None, repr(exc), time.monotonic()
                try:
                    return response.status_code, json.loads(response.content), time.monotonic()
                except ValueError:
                    return response.status_code, response.text, time.monotonic()

            locker, watcher = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
            try:
                lock = locker.transaction()
                await lock.start()
                await locker.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
                tasks = [asyncio.create_task(login(i)) for i in range(LOGINS)]
                waiting = await _until_waiting(watcher, LOGINS)
                answered = [task.result()[:2] for task in tasks if task.done()]
                assert waiting == LOGINS, (
                    f"only {waiting} of {LOGINS} logins reached the service; answered already: "
                    f"{answered[:3]}; backends: {await _backends(watcher)}; log: {log.read_text()[-2000:]}"
                )
                sigterm_at = time.monotonic()
                process.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.5)  # the server is shutting down while they are still held
                still_running = process.poll() is None
                await lock.rollback()  # each login goes on: user row, a bcrypt verify at cost 10, a session
            finally:
                await locker.close()
                await watcher.close()
            results = await asyncio.gather(*tasks)

        code = await asyncio.to_thread(process.wait, GRACE + 10)
    output = log.read_text()

    assert still_running, f"the service exited while requests were held:\n{output[-3000:]}"
    cut = [(status, body) for status, body, _ in results if status != 200 or not isinstance(body, dict)]
    assert cut == [], f"{len(cut)} of {LOGINS} requests not answered in full: {cut[:5]}"
    assert all(
        {"access_token", "refresh_token"} <= set(body) for _, body, _ in results if isinstance(body, dict)
    )
    assert all(finished > sigterm_at for _, _, finished in results)
    assert code == 0, f"exit status {code} after SIGTERM:\n{output[-3000:]}"
    assert "Traceback" not in output, output[-3000:]
    drained = max(finished for _, _, finished in results) - sigterm_at
    print(
        f"\nworkers={workers}: {LOGINS} logins held at SIGTERM, all 200 {drained:.2f}s after it; exit {code}"
    )


async def _backends(conn: asyncpg.Connection) -> list[tuple[str, str, str, str]]:
    """What each of the database's backends is doing (for a failure's message)."""
    rows = await conn.fetch(
        "SELECT application_name, state, coalesce(wait_event_type, ''), left(query, 60) "
        "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    return [tuple(row) for row in rows]


async def _until_waiting(conn: asyncpg.Connection, count: int) -> int:
    """Wait until `count` of the service's backends wait on a lock (the requests are inside handlers).

    Asked outside the lock's transaction: PostgreSQL shows one snapshot of pg_stat_activity per transaction.
    """
    deadline = time.monotonic() + HANG
    while True:
        waiting = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'userapi' AND wait_event_type = 'Lock'"
        )
        if waiting >= count or time.monotonic() > deadline:
            return int(waiting)
        await asyncio.sleep(0.05)
