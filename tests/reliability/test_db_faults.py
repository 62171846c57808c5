"""Database faults with a real server: PostgreSQL stops under load -> fast 503s and not-ready; it comes
back -> the same process recovers by itself; no answered write is lost, none is half-written."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.fixtures.helpers import API, PASSWORD, run_cli, running_server, server_env, unique_email
from tests.fixtures.load import (
    CLIENT_LIMITS,
    HANG,
    NO_THROTTLE,
    Outcome,
    destroy_cluster,
    report,
    send,
    tally,
    violations,
)
from userapi.db.embedded import EmbeddedPostgres

POOL_TIMEOUT = 2.0
MARGIN = 3.0  # scheduling on a busy CI machine; a hang is HANG (30 s) and fails loudly
RECOVERY_LIMIT = 10.0
ALLOWED = {"register": {201, 503}, "me": {200, 503}}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    """A cluster of this test's own, so stopping it cannot hurt any other test."""
    pg = EmbeddedPostgres(tmp_path / "postgres")
    try:
        yield pg
    finally:
        destroy_cluster(pg)


def _stop_immediately(pg: EmbeddedPostgres) -> None:
    """`pg_ctl stop -m immediate`: SIGQUIT to the postmaster, every backend dies at once."""
    pid = pg.status().pid
    assert pid is not None
    os.kill(pid, signal.SIGQUIT)
    deadline = time.monotonic() + 30
    while pg.status().running:
        assert time.monotonic() < deadline, "PostgreSQL did not stop on SIGQUIT"
        time.sleep(0.02)


async def _durable_commits(url: str) -> None:
    """Production durability for this cluster: the development one runs with synchronous_commit=off,
    so an immediate stop would lose commits already acknowledged, by configuration, not by a bug."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("ALTER SYSTEM SET synchronous_commit = on")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


@dataclass
class Traffic:
    """Registrations (each a new email) and /users/me, in loops, until told to stop."""

    http: httpx.AsyncClient
    token: str
    outcomes: list[Outcome] = field(default_factory=list)
    running: bool = True

    async def flowing(self) -> None:
        """Wait until both kinds of request succeed again (bounded: a busy machine is slow to start)."""
        mark, deadline = len(self.outcomes), time.monotonic() + 15
        while not {"register 201", "me 200"} <= set(tally(self.outcomes[mark:])):
            assert time.monotonic() < deadline, f"traffic is not flowing: {tally(self.outcomes[mark:])}"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)

    async def registrations(self) -> None:
        while self.running:
            email = unique_email("fault")
            body = {"email": email, "password": PASSWORD}
            self.outcomes.append(
                await send(self.http, "register", "POST", f"{API}/auth/register", email, json=body)
            )
            await asyncio.sleep(0.01)

    async def me(self) -> None:
        while self.running:
            headers = {"Authorization": f"Bearer {self.token}"}
            self.outcomes.append(await send(self.http, "me", "GET", f"{API}/users/me", headers=headers))
            await asyncio.sleep(0.01)


async def _first_200(http: httpx.AsyncClient, kind: str, url: str, since: float, **kw: Any) -> float:
    """Seconds from `since` until `url` answers 200 (polled); fails after twice the recovery limit."""
    while True:
        outcome = await send(http, kind, "GET", url, **kw)
        if outcome.status == 200:
            return outcome.finished - since
        assert time.monotonic() - since < 2 * RECOVERY_LIMIT, f"{url} not back: {outcome}"
        await asyncio.sleep(0.05)


async def _integrity(url: str, outcomes: list[Outcome]) -> tuple[list[str], list[str], list[str]]:
    """(201 emails without a user row, user rows without their signup event, non-201 emails stored)."""
    sent = {o.key: o for o in outcomes if o.kind == "register"}
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            """
            SELECT u.email, EXISTS (
                SELECT 1 FROM auth_events e WHERE e.user_id = u.id AND e.type = 'signup'
            ) AS audited
            FROM users u WHERE u.email = ANY($1::text[])
            """,
            list(sent),
        )
    finally:
        await conn.close()
    stored = {r["email"]: r["audited"] for r in rows}
    lost = [e for e, o in sent.items() if o.status == 201 and e not in stored]
    half_written = [e for e, audited in stored.items() if not audited]
    stored_despite_error = [f"{e} ({sent[e].status})" for e in stored if sent[e].status != 201]
    return lost, half_written, stored_despite_error


async def test_database_stops_under_load_fails_fast_and_recovers_without_restart(
    cluster: EmbeddedPostgres,
) -> None:
    url = await asyncio.to_thread(cluster.start)
    await _durable_commits(url)
    env = server_env(url, DB_POOL_SIZE="10", DB_POOL_TIMEOUT=str(POOL_TIMEOUT), **NO_THROTTLE)
    migrated = await asyncio.to_thread(run_cli, "migrate", env=env)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr

    recoveries: dict[str, tuple[float, float]] = {}
    outages: list[tuple[float, float]] = []
    with running_server(env) as base:
        async with httpx.AsyncClient(base_url=base, limits=CLIENT_LIMITS, timeout=HANG) as http:
            email = unique_email("fault-me")
            assert (
                await http.post(f"{API}/auth/register", json={"email": email, "password": PASSWORD})
            ).is_success
            signed_in = await http.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD})
            token = signed_in.json()["access_token"]
            me_headers = {"Authorization": f"Bearer {token}"}
            traffic = Traffic(http, token)
            loops = [asyncio.create_task(traffic.registrations()) for _ in range(4)]
            loops += [asyncio.create_task(traffic.me()) for _ in range(4)]
            probes: list[Outcome] = []
            try:
                await traffic.flowing()

                stops = {"fast": cluster.stop, "immediate": lambda: _stop_immediately(cluster)}
                for mode, stop in stops.items():
                    down = time.monotonic()
                    await asyncio.to_thread(stop)  # with requests in flight
                    await asyncio.sleep(0.5)
                    ready = await send(http, "ready", "GET", "/health/ready")
                    me = await send(http, "me", "GET", f"{API}/users/me", headers=me_headers)
                    probes += [ready, me]
                    assert ready.status == 503, ready
                    assert ready.content_type.startswith("application/problem+json"), ready
                    assert me.status == 503, me

                    await asyncio.to_thread(cluster.start)
                    up = time.monotonic()
                    outages.append((down, up))
                    me_back, ready_back = await asyncio.gather(
                        _first_200(http, "me", f"{API}/users/me", up, headers=me_headers),
                        _first_200(http, "ready", "/health/ready", up),
                    )
                    recoveries[mode] = (me_back, ready_back)
                    await traffic.flowing()  # on the recovered pool
            finally:
                traffic.running = False
                await asyncio.gather(*loops)

            # Load gone: a following batch is served in full by the same process.
            after = await asyncio.gather(
                *(send(http, "me", "GET", f"{API}/users/me", headers=me_headers) for _ in range(10)),
                *(
                    send(
                        http,
                        "register",
                        "POST",
                        f"{API}/auth/register",
                        e,
                        json={"email": e, "password": PASSWORD},
                    )
                    for e in [unique_email("fault-after") for _ in range(5)]
                ),
            )
            assert all(o.status in (200, 201) for o in after), tally(after)

    summary = ", ".join(
        f"{mode}: /users/me {me:.2f}s, /health/ready {ready:.2f}s" for mode, (me, ready) in recoveries.items()
    )
    in_flight = sum(o.started < down < o.finished for o in traffic.outcomes for down, _ in outages)
    print(f"\nrecovery after start() returned: {summary}")
    print(f"traffic: {tally(traffic.outcomes)}, {in_flight} in flight when PostgreSQL stopped")

    outcomes = traffic.outcomes + list(after) + [p for p in probes if p.kind != "ready"]
    found = violations(outcomes, ALLOWED, POOL_TIMEOUT + MARGIN)
    assert not found, report(found, outcomes)
    during = [o for o in traffic.outcomes if any(down <= o.started <= up for down, up in outages)]
    assert {"register 503", "me 503"} <= set(tally(during)), (
        f"the outages were not exercised: {tally(during)}"
    )
    for mode, times in recoveries.items():
        assert max(times) < RECOVERY_LIMIT, f"{mode} stop: recovered only after {max(times):.1f}s"

    lost, half_written, stored_despite_error = await _integrity(url, traffic.outcomes + list(after))
    assert lost == [], f"answered 201 but not stored: {lost}"
    assert half_written == [], f"user rows without their signup event (not atomic): {half_written}"
    if stored_despite_error:
        # Possible in principle (the commit reached the server, its acknowledgement did not come back).
        print(f"stored although answered with an error: {stored_despite_error}")
