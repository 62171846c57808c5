"""Two real `userapi serve` processes sharing login throttling through one private Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest
import redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.helpers import API, PASSWORD, running_server, server_env, unique_email
from tests.fixtures.redis_server import redis_server

LIMIT = 3


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


def _two_servers(stack: ExitStack, env: dict[str, str]) -> tuple[str, str]:
    # One after the other: started together on a busy machine, each can miss its readiness deadline.
    return stack.enter_context(running_server(env)), stack.enter_context(running_server(env))


async def test_failures_on_one_process_count_on_the_other(
    database_url: str, engine: AsyncEngine, redis_url: str
) -> None:
    env = server_env(
        database_url,
        RATE_LIMIT_STORAGE_URL=redis_url,
        RATE_LIMIT_LOGIN_ACCOUNT=f"{LIMIT}/minute",
    )
    email = unique_email("shared")
    try:
        with ExitStack() as stack:
            a, b = await asyncio.to_thread(_two_servers, stack, env)
            assert a != b
            async with httpx.AsyncClient(timeout=10) as http:

                async def login(base: str, password: str) -> httpx.Response:
                    return await http.post(
                        f"{base}{API}/auth/login", json={"email": email, "password": password}
                    )

                signup = await http.post(
                    f"{a}{API}/auth/register", json={"email": email, "password": PASSWORD}
                )
                assert signup.status_code == 201, signup.text
                # The limit is per process with memory://; here each process alone saw fewer than 3.
                for base in (a, b, a):
                    assert (await login(base, "wrong password")).status_code == 401
                for base in (b, a):
                    refused = await login(base, PASSWORD)
                    assert refused.status_code == 429, refused.text
                    assert refused.headers["content-type"] == "application/problem+json"
                    assert int(refused.headers["retry-after"]) >= 1

            # The counters really live in Redis (the limits library's keys).
            client = redis.Redis.from_url(redis_url)
            try:
                assert any(email.encode() in key for key in client.scan_iter("LIMITS*"))
            finally:
                client.close()
    finally:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "DELETE FROM auth_events WHERE detail->>'email' = :e OR user_id IN "
                    "(SELECT id FROM users WHERE email = :e)"
                ),
                {"e": email},
            )
            await conn.execute(text("DELETE FROM users WHERE email = :e"), {"e": email})
