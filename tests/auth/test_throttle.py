"""Login and registration throttling over HTTP, and which client address the limits are keyed on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tests.fixtures.app import app_client, make_account
from tests.fixtures.helpers import (
    API,
    PASSWORD,
    assert_throttled,
    make_settings,
    throttled_settings,
    unique_email,
)
from userapi.core.config import Settings

ATTACKER = "203.0.113.66"
OWNER = "198.51.100.7"


async def attempt(
    client: httpx.AsyncClient, email: str, password: str, ip: str | None = None
) -> httpx.Response:
    headers = {"X-Forwarded-For": ip} if ip else {}
    return await client.post(
        f"{API}/auth/login", json={"email": email, "password": password}, headers=headers
    )


def test_settings_defaults() -> None:
    defaults = Settings(_env_file=None, environment="development")  # type: ignore[call-arg]
    assert defaults.rate_limit_storage_url == "memory://"
    assert defaults.rate_limit_login_account == "5/minute"
    assert defaults.rate_limit_login_ip == "60/minute"
    assert defaults.rate_limit_register_ip == "20/minute"
    assert defaults.trusted_proxies == []
    parsed = Settings(_env_file=None, trusted_proxies="10.0.0.1, 10.1.0.0/16")  # type: ignore[call-arg]
    assert parsed.trusted_proxies == ["10.0.0.1", "10.1.0.0/16"]


async def test_failed_logins_per_account_and_ip_are_throttled(
    settings: Settings, engine: AsyncEngine, db_conn: AsyncConnection
) -> None:
    async with app_client(
        throttled_settings(settings, rate_limit_login_account="5/minute"), engine, db_conn
    ) as client:
        account = await make_account(client)
        for _ in range(5):
            assert (await attempt(client, account["email"], "wrong password", ATTACKER)).status_code == 401
        # Past the limit even the right password is refused from that address...
        assert_throttled(await attempt(client, account["email"], PASSWORD, ATTACKER))
        # ...and the email's letter case is no way around it.
        assert_throttled(await attempt(client, account["email"].upper(), "wrong password", ATTACKER))
        # The owner, elsewhere, is not locked out by someone else's failures.
        owner = await attempt(client, account["email"], PASSWORD, OWNER)
        assert owner.status_code == 200, owner.text
        # A throttled attempt is recorded.
        recorded = await db_conn.scalar(
            text("SELECT count(*) FROM auth_events WHERE type = 'login_throttled' AND ip = :ip"),
            {"ip": ATTACKER},
        )
        assert recorded == 2


async def test_every_attempt_counts_so_the_owner_elsewhere_is_unaffected(
    settings: Settings, engine: AsyncEngine, db_conn: AsyncConnection
) -> None:
    """Attempts are counted before the password is checked (so bursts cannot slip through); a
    success is an attempt too. The owner's other address keeps its own count."""
    async with app_client(
        throttled_settings(settings, rate_limit_login_account="3/minute"), engine, db_conn
    ) as client:
        account = await make_account(client)
        for _ in range(3):
            assert (await attempt(client, account["email"], PASSWORD, ATTACKER)).status_code == 200
        assert_throttled(await attempt(client, account["email"], PASSWORD, ATTACKER))
        assert (await attempt(client, account["email"], PASSWORD, OWNER)).status_code == 200


async def test_failed_logins_per_ip_are_throttled_across_accounts(
    settings: Settings, engine: AsyncEngine, db_conn: AsyncConnection
) -> None:
    limits = throttled_settings(
        settings, rate_limit_login_ip="3/minute", rate_limit_login_account="100/minute"
    )
    async with app_client(limits, engine, db_conn) as client:
        victim = await make_account(client)
        # Credential stuffing: each attempt on a different (unknown) account from the same address.
        for _ in range(3):
            assert (
                await attempt(client, unique_email("stuffed"), "guess-guess", ATTACKER)
            ).status_code == 401
        assert_throttled(await attempt(client, victim["email"], PASSWORD, ATTACKER))
        assert_throttled(await attempt(client, unique_email("stuffed"), "guess-guess", ATTACKER))
        # Another address is unaffected.
        assert (await attempt(client, victim["email"], PASSWORD, OWNER)).status_code == 200


async def test_the_oauth2_form_login_is_throttled_too(
    settings: Settings, engine: AsyncEngine, db_conn: AsyncConnection
) -> None:
    async with app_client(
        throttled_settings(settings, rate_limit_login_account="2/minute"), engine, db_conn
    ) as client:
        account = await make_account(client)
        form = {"grant_type": "password", "username": account["email"], "password": "wrong password"}
        for _ in range(2):
            response = await client.post(
                f"{API}/auth/token", data=form, headers={"X-Forwarded-For": ATTACKER}
            )
            assert response.status_code == 400
        # The JSON and the form endpoint share the counters.
        assert_throttled(await attempt(client, account["email"], PASSWORD, ATTACKER))
        form["password"] = PASSWORD
        assert_throttled(
            await client.post(f"{API}/auth/token", data=form, headers={"X-Forwarded-For": ATTACKER})
        )


async def test_registration_is_throttled_per_ip(
    settings: Settings, engine: AsyncEngine, db_conn: AsyncConnection
) -> None:
    async with app_client(
        throttled_settings(settings, rate_limit_register_ip="2/minute"), engine, db_conn
    ) as client:

        async def register(ip: str) -> httpx.Response:
            body = {"email": unique_email("reg"), "password": PASSWORD}
            return await client.post(f"{API}/auth/register", json=body, headers={"X-Forwarded-For": ip})

        assert (await register(ATTACKER)).status_code == 201
        assert (await register(ATTACKER)).status_code == 201
        refused = await register(ATTACKER)
        assert_throttled(refused)
        assert (await register(OWNER)).status_code == 201
        # The refused sign-up created nothing.
        created = await db_conn.scalar(
            text("SELECT count(*) FROM auth_events WHERE type = 'signup' AND ip = :ip"), {"ip": ATTACKER}
        )
        assert created == 2


async def test_forwarded_for_is_ignored_from_an_untrusted_peer(
    settings: Settings, engine: AsyncEngine, db_conn: AsyncConnection
) -> None:
    untrusted = make_settings(settings.plain_database_url or "", rate_limit_login_account="3/minute")
    assert untrusted.trusted_proxies == []
    async with app_client(untrusted, engine, db_conn) as client:
        account = await make_account(client)  # its login is the first of 3 attempts from 127.0.0.1
        for ip in ("192.0.2.1", "192.0.2.2"):
            assert (await attempt(client, account["email"], "wrong password", ip)).status_code == 401
        # A forged header does not buy a fresh counter: the socket peer is what counts.
        assert_throttled(await attempt(client, account["email"], PASSWORD, "192.0.2.3"))
        ips = (
            await db_conn.scalars(
                text("SELECT DISTINCT ip FROM auth_events WHERE user_id = :u AND type = 'login_failed'"),
                {"u": account["id"]},
            )
        ).all()
        assert ips == ["127.0.0.1"]


async def test_forwarded_for_from_a_trusted_proxy_names_the_client(
    settings: Settings, engine: AsyncEngine, db_conn: AsyncConnection
) -> None:
    async with app_client(throttled_settings(settings), engine, db_conn) as client:
        account = await make_account(client)
        # The client may prepend anything; the hop our proxy appended (rightmost untrusted) counts.
        headers = {"X-Forwarded-For": "6.6.6.6, 203.0.113.5", "User-Agent": "ua-test"}
        response = await client.post(
            f"{API}/auth/login", json={"email": account["email"], "password": PASSWORD}, headers=headers
        )
        assert response.status_code == 200
        auth = {"Authorization": f"Bearer {response.json()['access_token']}"}
        sessions = (await client.get(f"{API}/auth/sessions", headers=auth)).json()
        current = next(s for s in sessions if s["current"])
        assert current["ip"] == "203.0.113.5"
        # Without the header the peer itself is the client.
        plain = await attempt(client, account["email"], "wrong password")
        assert plain.status_code == 401
        ip = await db_conn.scalar(
            text("SELECT ip FROM auth_events WHERE user_id = :u AND type = 'login_failed'"),
            {"u": account["id"]},
        )
        assert ip == "127.0.0.1"


@pytest.fixture
async def live_throttled_client(settings: Settings, engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    """Real commits (concurrent requests need their own connections); tables emptied afterwards."""
    limits = throttled_settings(settings, rate_limit_login_account="3/minute", rate_limit_login_ip="5/minute")
    try:
        async with app_client(limits, engine, None) as client:
            yield client
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("TRUNCATE users, refresh_tokens, auth_events CASCADE"))


async def test_a_burst_of_simultaneous_guesses_gets_no_more_tries_than_the_limits(
    live_throttled_client: httpx.AsyncClient,
) -> None:
    client = live_throttled_client
    account = await make_account(client)
    # One account from one address: only 3 guesses may be checked; the rest are refused unchecked.
    burst = await asyncio.gather(
        *(attempt(client, account["email"], f"guess number {i}", ATTACKER) for i in range(12))
    )
    statuses = sorted(r.status_code for r in burst)
    assert statuses == [401] * 3 + [429] * 9, statuses

    # Credential stuffing from another address, one guess per account: the per-IP limit (5) holds.
    stuffing = await asyncio.gather(
        *(attempt(client, unique_email("stuffed"), "guess-guess", "192.0.2.99") for _ in range(12))
    )
    statuses = sorted(r.status_code for r in stuffing)
    assert statuses == [401] * 5 + [429] * 7, statuses
