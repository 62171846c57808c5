"""`userapi reset-mfa --email`: the locked-out operator's way back, through the same service, audited."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.app import make_account
from tests.fixtures.helpers import API, assert_one_line_error, run_cli, server_env
from tests.mfa.conftest import FakeClock, enable_totp
from userapi.core.clock import Clock, get_clock


async def test_reset_mfa_removes_the_factor_and_ends_every_session(
    live_app: FastAPI, live_client: httpx.AsyncClient, engine: AsyncEngine, database_url: str
) -> None:
    clock = FakeClock()

    async def override() -> Clock:
        return clock

    live_app.dependency_overrides[get_clock] = override
    account = await enable_totp(live_client, await make_account(live_client), clock)
    env = server_env(database_url)

    result = await asyncio.to_thread(run_cli, "reset-mfa", "--email", account["email"].upper(), env=env)
    assert result.returncode == 0, result.stderr
    assert "second factor of" in result.stdout
    assert "removed" in result.stdout

    assert (await live_client.get(f"{API}/users/me", headers=account.headers)).status_code == 401
    login = await live_client.post(
        f"{API}/auth/login", json={"email": account["email"], "password": account["password"]}
    )
    assert login.status_code == 200, login.text
    async with engine.connect() as conn:
        detail = await conn.scalar(
            text("SELECT detail FROM auth_events WHERE user_id = :id AND type = 'mfa_reset'"),
            {"id": account["id"]},
        )
    assert detail == {"actor": "cli"}

    again = await asyncio.to_thread(run_cli, "reset-mfa", "--email", account["email"], env=env)
    assert again.returncode == 0, again.stderr
    assert "nothing changed" in again.stdout


def test_reset_mfa_of_an_unknown_account_is_one_line(database_url: str) -> None:
    result = run_cli("reset-mfa", "--email", "nobody-here@example.com", env=server_env(database_url))
    assert_one_line_error(result, "nobody-here@example.com")
