"""Every check of a secret has login's guards, over HTTP: counted before the check, 429 past its
limits, each failure and throttling in the audit trail, each outcome in the metrics (userapi.guard)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tests.fixtures.app import Account, app_client, make_account
from tests.fixtures.database import truncate_all
from tests.fixtures.helpers import (
    API,
    PASSWORD,
    assert_problem,
    assert_throttled,
    login,
    make_settings,
    metric_sample,
    unique_email,
)
from userapi.core.config import MailDelivery, Settings

ATTACKER = "203.0.113.66"
ELSEWHERE = "198.51.100.7"
NEW_PASSWORD = "a different fine passphrase"


def limited(base: Settings, **overrides: Any) -> Settings:
    """Settings behind a trusted proxy at 127.0.0.1 (httpx's ASGI peer): X-Forwarded-For names the client."""
    return make_settings(base.plain_database_url or "", **{"trusted_proxies": ["127.0.0.1"], **overrides})


async def change_password(
    client: httpx.AsyncClient, account: Account, current: str, ip: str = ATTACKER
) -> httpx.Response:
    return await client.post(
        f"{API}/users/me/password",
        json={"current_password": current, "new_password": NEW_PASSWORD},
        headers={**account.headers, "X-Forwarded-For": ip},
    )


async def events(conn: AsyncConnection, user_id: str) -> list[Any]:
    rows = await conn.execute(
        text(
            "SELECT type, ip, detail FROM auth_events WHERE user_id = :u "
            "AND type IN ('secret_check_failed', 'secret_check_throttled') ORDER BY id"
        ),
        {"u": user_id},
    )
    return list(rows)


# --- the password change (issue 11, item 2) ---------------------------------------------------------------


async def test_the_password_change_oracle_is_closed_with_the_default_limit(
    settings: Settings, engine: AsyncEngine, db_conn: AsyncConnection
) -> None:
    """A stolen access token: 10 wrong current passwords, then the right one. Only 5 are checked."""
    default = Settings.model_fields["rate_limit_secret_account"].default
    assert default == "5/minute"
    async with app_client(limited(settings, rate_limit_secret_account=default), engine, db_conn) as client:
        account = await make_account(client)
        statuses = [(await change_password(client, account, f"guess {i}")).status_code for i in range(10)]
        right = await change_password(client, account, PASSWORD)
        assert statuses == [403] * 5 + [429] * 5
        assert_throttled(right)
        # Nothing changed: the old password still signs in.
        login = await client.post(f"{API}/auth/login", json={"email": account["email"], "password": PASSWORD})
        assert login.status_code == 200


@pytest.mark.parametrize("limit", [1, 3, 6])
async def test_wrong_current_passwords_are_throttled_per_account_and_audited(
    settings: Settings, engine: AsyncEngine, db_conn: AsyncConnection, limit: int
) -> None:
    async with app_client(
        limited(settings, rate_limit_secret_account=f"{limit}/minute"), engine, db_conn
    ) as client:
        account = await make_account(client)
        for guess in [f"wrong guess {i}" for i in range(limit)]:
            assert_problem(await change_password(client, account, guess), 403, "wrong_current_password")
        # Past the limit even the right password is refused unchecked, from any address: the
        # caller already holds the account, so its budget is not multiplied per IP.
        assert_throttled(await change_password(client, account, PASSWORD))
        assert_throttled(await change_password(client, account, PASSWORD, ELSEWHERE))
        recorded = await events(db_conn, account["id"])
    assert [row.type for row in recorded] == ["secret_check_failed"] * limit + ["secret_check_throttled"] * 2
    for row in recorded[:limit]:
        assert row.ip == ATTACKER
        assert row.detail == {"kind": "current_password", "reason": "wrong_password"}
    assert [row.ip for row in recorded[limit:]] == [ATTACKER, ELSEWHERE]
    assert all(row.detail == {"kind": "current_password"} for row in recorded[limit:])


async def test_other_accounts_are_not_throttled_by_one_account_s_failures(
    settings: Settings, engine: AsyncEngine, db_conn: AsyncConnection
) -> None:
    async with app_client(limited(settings, rate_limit_secret_account="2/minute"), engine, db_conn) as client:
        victim, bystander = await make_account(client), await make_account(client)
        for _ in range(2):
            assert (await change_password(client, victim, "wrong guess")).status_code == 403
        assert_throttled(await change_password(client, victim, PASSWORD))
        assert (await change_password(client, bystander, PASSWORD)).status_code == 204


async def test_secret_checks_are_throttled_per_ip_across_accounts(
    settings: Settings, engine: AsyncEngine, db_conn: AsyncConnection
) -> None:
    async with app_client(limited(settings, rate_limit_secret_ip="3/minute"), engine, db_conn) as client:
        accounts = [await make_account(client) for _ in range(4)]
        for account in accounts[:3]:
            assert (await change_password(client, account, "wrong guess")).status_code == 403
        # One address guessing one password of each of many stolen sessions: the fourth is refused.
        assert_throttled(await change_password(client, accounts[3], "wrong guess"))
        assert (await change_password(client, accounts[3], "wrong guess", ELSEWHERE)).status_code == 403


async def test_every_outcome_is_counted_in_the_metrics(
    settings: Settings, engine: AsyncEngine, db_conn: AsyncConnection
) -> None:
    async with app_client(limited(settings, rate_limit_secret_account="2/minute"), engine, db_conn) as client:
        account = await make_account(client)
        before = (await client.get("/metrics")).text
        assert (await change_password(client, account, "wrong guess")).status_code == 403
        assert (await change_password(client, account, PASSWORD)).status_code == 204
        # That ended every session: sign in again, then the third attempt is over the limit.
        account["tokens"] = await login(client, account["email"], NEW_PASSWORD)
        assert_throttled(await change_password(client, account, NEW_PASSWORD))
        wrong_login = {"email": account["email"], "password": "wrong guess"}
        assert (await client.post(f"{API}/auth/login", json=wrong_login)).status_code == 401
        after = (await client.get("/metrics")).text

    def delta(name: str, **labels: str) -> float:
        return metric_sample(after, name, **labels) - metric_sample(before, name, **labels)

    checks = "userapi_secret_checks_total"
    assert delta(checks, kind="current_password", outcome="failure") == 1
    assert delta(checks, kind="current_password", outcome="success") == 1
    assert delta(checks, kind="current_password", outcome="throttled") == 1
    assert delta(checks, kind="password", outcome="failure") == 1
    # The login series of before still counts sign-ins.
    assert delta("userapi_logins_total", outcome="failure") == 1


@pytest.fixture
async def live_limited_client(settings: Settings, engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    """Real commits (concurrent requests need their own connections); tables emptied afterwards."""
    try:
        limits = limited(settings, rate_limit_secret_account="5/minute")
        async with app_client(limits, engine, None) as client:
            yield client
    finally:
        await truncate_all(engine)


async def test_a_burst_of_guesses_gets_no_more_checks_than_the_limit_and_every_row_commits(
    live_limited_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    client = live_limited_client
    account = await make_account(client)
    burst = await asyncio.gather(*(change_password(client, account, f"guess {i}") for i in range(12)))
    assert sorted(r.status_code for r in burst) == [403] * 5 + [429] * 7
    # Each failure and each throttling is in the trail although every one of these requests failed.
    async with engine.connect() as fresh:
        recorded = await events(fresh, account["id"])
    types = sorted(row.type for row in recorded)
    assert types == ["secret_check_failed"] * 5 + ["secret_check_throttled"] * 7


async def test_the_metrics_token_is_a_guarded_secret(
    settings: Settings, engine: AsyncEngine, db_conn: AsyncConnection
) -> None:
    guarded = limited(settings, rate_limit_secret_ip="2/minute").model_copy(
        update={"metrics_token": SecretStr("scrape-me")}
    )
    async with app_client(guarded, engine, db_conn) as client:

        async def scrape(authorization: str, ip: str) -> httpx.Response:
            headers = {"Authorization": authorization, "X-Forwarded-For": ip}
            return await client.get("/metrics", headers=headers)

        for wrong in ("Bearer nope", "scrape-me"):
            assert_problem(await scrape(wrong, ATTACKER), 401, "unauthenticated")
        assert_throttled(await scrape("Bearer scrape-me", ATTACKER))
        assert (await scrape("Bearer scrape-me", ELSEWHERE)).status_code == 200
    rows = (
        await db_conn.execute(
            text("SELECT type, detail FROM auth_events WHERE ip = :ip ORDER BY id"), {"ip": ATTACKER}
        )
    ).all()
    assert [(r.type, r.detail["kind"]) for r in rows] == [
        ("secret_check_failed", "metrics_token"),
        ("secret_check_failed", "metrics_token"),
        ("secret_check_throttled", "metrics_token"),
    ]


# --- every operation that checks a secret goes through it --------------------------------------------------

WRONG = "wrong-secret-guess-4411"
# A body field whose name says it carries a secret.
SECRET_FIELD = re.compile(r"password|secret|token|code", re.IGNORECASE)
# Operations with such a field that compare nothing a guess could hit, and why.
WRONG_CODE = "000000"  # right once in a million draws: a TOTP code, not this factor's
WRONG_TOKEN = "A" * 43  # the shape of a mailed token (32 bytes, base64url), not one
NOT_SECRET_CHECKS = {
    ("POST", "/api/v1/auth/register"): "password: a new password; nothing stored is compared",
    ("POST", "/api/v1/users"): "password: a new password an admin sets; nothing is compared",
    # RFC 6749 10.10 / RFC 6819 5.1.4.2.2: 256 random bits are not guessable, and a spent token
    # presented again revokes its session; throttling would only add a way to fail honest clients.
    ("POST", "/api/v1/auth/refresh"): "refresh_token: 256 random bits",
    ("POST", "/api/v1/auth/logout"): "refresh_token: 256 random bits; a wrong one ends nothing",
}
# Every operation that compares a presented secret: how to present a wrong one.
SECRET_CHECKS: dict[tuple[str, str], Callable[[Account], dict[str, Any]]] = {
    ("POST", "/api/v1/auth/login"): lambda a: {"json": {"email": a["email"], "password": WRONG}},
    ("POST", "/api/v1/auth/token"): lambda a: {
        "data": {"grant_type": "password", "username": a["email"], "password": WRONG}
    },
    ("POST", "/api/v1/users/me/password"): lambda a: {
        "json": {"current_password": WRONG, "new_password": NEW_PASSWORD},
        "headers": a.headers,
    },
    # Mailed one-time tokens (RFC 4086-strength, yet each use is a secret check: counted per IP).
    ("POST", "/api/v1/auth/password/reset"): lambda a: {
        "json": {"token": WRONG_TOKEN, "new_password": NEW_PASSWORD}
    },
    ("POST", "/api/v1/auth/email/verify"): lambda a: {"json": {"token": WRONG_TOKEN}},
    ("POST", "/api/v1/auth/email/change/confirm"): lambda a: {"json": {"token": WRONG_TOKEN}},
    ("POST", "/api/v1/users/me/email"): lambda a: {
        "json": {"new_email": unique_email("moved"), "current_password": WRONG},
        "headers": a.headers,
    },
    # The second factor (prepared by PREPARE below): TOTP codes, and the passwords that guard it
    # (turning TOTP off or replacing recovery codes checks the password first, then the code; a
    # right password counts as an attempt too, so the wrong one is the password here and the codes
    # are tested in tests/mfa).
    ("POST", "/api/v1/users/me/mfa/totp"): lambda a: {
        "json": {"current_password": WRONG},
        "headers": a.headers,
    },
    ("POST", "/api/v1/users/me/mfa/totp/confirm"): lambda a: {
        "json": {"code": WRONG_CODE},
        "headers": a.headers,
    },
    ("DELETE", "/api/v1/users/me/mfa/totp"): lambda a: {
        "json": {"current_password": WRONG, "code": WRONG_CODE},
        "headers": a.headers,
    },
    ("POST", "/api/v1/users/me/mfa/recovery-codes"): lambda a: {
        "json": {"current_password": WRONG, "code": WRONG_CODE},
        "headers": a.headers,
    },
    ("POST", "/api/v1/auth/mfa/verify"): lambda a: {
        "json": {"mfa_token": a["mfa_token"], "code": WRONG_CODE}
    },
    # The secret is a header, not a body field: listed by hand.
    ("GET", "/metrics"): lambda a: {"headers": {"Authorization": f"Bearer {WRONG}"}},
}


async def _enrolment_pending(client: httpx.AsyncClient, account: Account) -> None:
    enrol = await client.post(
        f"{API}/users/me/mfa/totp", json={"current_password": PASSWORD}, headers=account.headers
    )
    assert enrol.status_code == 201, enrol.text
    account["mfa_secret"] = enrol.json()["secret"]


async def _totp_on(client: httpx.AsyncClient, account: Account) -> None:
    await _enrolment_pending(client, account)
    code = pyotp.TOTP(account["mfa_secret"]).now()
    confirmed = await client.post(
        f"{API}/users/me/mfa/totp/confirm", json={"code": code}, headers=account.headers
    )
    assert confirmed.status_code == 200, confirmed.text


async def _second_step_due(client: httpx.AsyncClient, account: Account) -> None:
    await _totp_on(client, account)
    started = await client.post(f"{API}/auth/login", json={"email": account["email"], "password": PASSWORD})
    assert started.status_code == 202, started.text
    account["mfa_token"] = started.json()["mfa_token"]


# What must exist before a wrong secret can be presented (a code needs a factor to check against).
PREPARE: dict[tuple[str, str], Callable[[httpx.AsyncClient, Account], Awaitable[None]]] = {
    ("POST", "/api/v1/users/me/mfa/totp/confirm"): _enrolment_pending,
    ("DELETE", "/api/v1/users/me/mfa/totp"): _totp_on,
    ("POST", "/api/v1/users/me/mfa/recovery-codes"): _totp_on,
    ("POST", "/api/v1/auth/mfa/verify"): _second_step_due,
}


def operations_taking_a_secret(spec: dict[str, Any]) -> set[tuple[str, str]]:
    found = set()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for content in operation.get("requestBody", {}).get("content", {}).values():
                schema = content["schema"]
                if "$ref" in schema:
                    schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
                if any(SECRET_FIELD.search(name) for name in schema.get("properties", {})):
                    found.add((method.upper(), path))
    return found


async def test_every_operation_taking_a_secret_is_classified(app: FastAPI) -> None:
    found = operations_taking_a_secret(app.openapi())
    unclassified = found - set(SECRET_CHECKS) - set(NOT_SECRET_CHECKS)
    assert not unclassified, f"add to SECRET_CHECKS (and guard them) or NOT_SECRET_CHECKS: {unclassified}"
    assert set(NOT_SECRET_CHECKS) | set(SECRET_CHECKS) - {("GET", "/metrics")} <= found, "stale entries"


@pytest.mark.parametrize(("method", "path"), list(SECRET_CHECKS))
async def test_every_secret_check_is_throttled_and_audited(
    settings: Settings,
    engine: AsyncEngine,
    db_conn: AsyncConnection,
    tmp_path: Path,
    method: str,
    path: str,
) -> None:
    limits = ("login_account", "login_ip", "secret_account", "secret_ip")
    every_limit = dict.fromkeys((f"rate_limit_{name}" for name in limits), "2/minute")
    # Mail on (to files, sent by no worker here): the address change checks its password only then.
    guarded = limited(settings, **every_limit).model_copy(
        update={
            "metrics_token": SecretStr("scrape-me"),
            "mail_delivery": MailDelivery.file,
            "data_dir": tmp_path,
        }
    )
    # The account and what the check needs are made first, on an app with the default limits: a
    # right secret counts against the limits too.
    async with app_client(settings, engine, db_conn) as setup:
        account = await make_account(setup)
        if (method, path) in PREPARE:
            await PREPARE[(method, path)](setup, account)
    async with app_client(guarded, engine, db_conn) as client:
        request = SECRET_CHECKS[(method, path)](account)
        headers = {**request.pop("headers", {}), "X-Forwarded-For": ATTACKER}
        for _ in range(2):
            refused = await client.request(method, path, headers=headers, **request)
            assert 400 <= refused.status_code < 500, refused.text
            assert refused.status_code != 429, refused.text
        assert_throttled(await client.request(method, path, headers=headers, **request))
    query = text("SELECT type FROM auth_events WHERE ip = :ip ORDER BY id")
    rows = list((await db_conn.execute(query, {"ip": ATTACKER})).scalars())
    sign_in = path in (f"{API}/auth/login", f"{API}/auth/token")
    failed = "login_failed" if sign_in else "secret_check_failed"
    throttled = "login_throttled" if sign_in else "secret_check_throttled"
    assert rows == [failed, failed, throttled]
