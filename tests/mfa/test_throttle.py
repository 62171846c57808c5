"""Second-factor code checks are throttled per account (the secret guard), across every mfa_token of it."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tests.fixtures.app import build_test_app, make_account
from tests.fixtures.helpers import API, assert_problem, throttled_settings
from tests.mfa.conftest import FakeClock, code_at, enable_totp, start_login
from userapi.core.clock import Clock, get_clock
from userapi.core.config import Settings


async def test_code_attempts_are_throttled_across_mfa_tokens(
    settings: Settings, engine: AsyncEngine, db_conn: AsyncConnection
) -> None:
    app = build_test_app(throttled_settings(settings, rate_limit_secret_account="4/minute"), engine, db_conn)
    clock = FakeClock()

    async def override() -> Clock:
        return clock

    app.dependency_overrides[get_clock] = override
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        account = await enable_totp(client, await make_account(client), clock)  # confirm: 1 code check
        first = (await start_login(client, account))["mfa_token"]
        second = (await start_login(client, account))["mfa_token"]
        for token in (first, first):
            response = await client.post(
                f"{API}/auth/mfa/verify", json={"mfa_token": token, "code": "000000"}
            )
            assert_problem(response, 401, "invalid_code")
        # Third failure on a new mfa_token: the account's fourth check, the last one allowed.
        response = await client.post(f"{API}/auth/mfa/verify", json={"mfa_token": second, "code": "000000"})
        assert_problem(response, 401, "invalid_code")
        # Even the right code on a fresh mfa_token is refused now.
        third = (await start_login(client, account))["mfa_token"]
        right = code_at(account.secret, clock.step)
        throttled = await client.post(f"{API}/auth/mfa/verify", json={"mfa_token": third, "code": right})
        assert_problem(throttled, 429, "too_many_requests")
        assert 1 <= int(throttled.headers["retry-after"]) <= 60
        # Keyed by account only (the caller already passed the password): another address does
        # not get a fresh budget, or a botnet would multiply the guesses.
        elsewhere = await client.post(
            f"{API}/auth/mfa/verify",
            json={"mfa_token": third, "code": right},
            headers={"X-Forwarded-For": "198.51.100.7"},
        )
        assert_problem(elsewhere, 429, "too_many_requests")
