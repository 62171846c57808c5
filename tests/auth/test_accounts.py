"""Accounts: registration, email normalisation and uniqueness, password rules and bcrypt hashing."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tests.fixtures.app import Account, build_test_app
from tests.fixtures.helpers import (
    API,
    PASSWORD,
    USER_FIELDS,
    assert_problem,
    bearer,
    login,
    make_settings,
    register,
    unique_email,
)
from userapi.core import security
from userapi.core.security import PasswordHasher, hash_rounds
from userapi.users.models import User

CREDENTIALS_401 = {
    "type": "https://userapi.dev/problems/invalid_credentials",
    "title": "Invalid credentials",
    "status": 401,
    "detail": "Incorrect email or password",
    "code": "invalid_credentials",
}


async def stored_hash(conn: AsyncConnection, email: str) -> str:
    return str((await conn.execute(select(User.password_hash).where(User.email == email))).scalar_one())


async def post_register(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.post(f"{API}/auth/register", json=body)


async def post_login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post(f"{API}/auth/login", json={"email": email, "password": password})


# --- registration ------------------------------------------------------------------------------


async def test_register_creates_a_user_role_account(
    client: httpx.AsyncClient, db_conn: AsyncConnection
) -> None:
    email = unique_email()
    response = await post_register(client, email=email, password=PASSWORD, full_name="Ada Lovelace")

    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == USER_FIELDS
    assert body["email"] == email
    assert body["full_name"] == "Ada Lovelace"
    assert body["role"] == "user"
    assert body["is_active"] is True
    uuid.UUID(body["id"])
    row = (await db_conn.execute(select(User.id, User.role).where(User.email == email))).one()
    assert str(row.id) == body["id"]
    assert row.role == "user"


async def test_register_without_full_name(client: httpx.AsyncClient) -> None:
    response = await post_register(client, email=unique_email(), password=PASSWORD)
    assert response.status_code == 201, response.text
    assert response.json()["full_name"] is None


async def test_register_refuses_a_role_in_the_body(
    client: httpx.AsyncClient, db_conn: AsyncConnection
) -> None:
    email = unique_email()
    response = await post_register(client, email=email, password=PASSWORD, role="admin")
    assert_problem(response, 422, "invalid_input")
    assert (await db_conn.execute(select(User).where(User.email == email))).first() is None


async def test_email_is_trimmed_and_lower_cased(client: httpx.AsyncClient, db_conn: AsyncConnection) -> None:
    local = f"Ada-{uuid.uuid4().hex[:8]}"
    response = await post_register(client, email=f"  {local}@Example.COM ", password=PASSWORD)

    assert response.status_code == 201, response.text
    expected = f"{local.lower()}@example.com"
    assert response.json()["email"] == expected
    assert (await db_conn.execute(text("SELECT email FROM users WHERE email = :e"), {"e": expected})).one()
    # Any letter case signs in to the one account.
    assert (await post_login(client, f"{local.upper()}@EXAMPLE.com", PASSWORD)).status_code == 200


async def test_email_differing_only_in_case_is_taken(client: httpx.AsyncClient) -> None:
    local = f"ada-{uuid.uuid4().hex[:8]}"
    await register(client, f"{local}@example.com")

    response = await post_register(client, email=f"{local.upper()}@EXAMPLE.COM", password=PASSWORD)

    body = assert_problem(response, 409, "email_taken")
    assert body == {
        "type": "https://userapi.dev/problems/email_taken",
        "title": "Email already registered",
        "status": 409,
        "detail": f"An account with the email {local}@example.com already exists",
        "code": "email_taken",
    }


@pytest.mark.parametrize(
    "email",
    [
        "",
        "not-an-email",
        "ada@",
        "@example.com",
        "ada@@example.com",
        "ada@example.test",
        "ada@localhost",
        "a" * 320 + "@example.com",
        "ada\x00@example.com",
        42,
        None,
    ],
)
async def test_invalid_email_is_422(client: httpx.AsyncClient, email: object) -> None:
    response = await client.post(f"{API}/auth/register", json={"email": email, "password": PASSWORD})
    body = assert_problem(response, 422, "invalid_input")
    assert body["errors"][0]["loc"] == ["body", "email"]


async def test_email_domain_is_not_resolved(client: httpx.AsyncClient) -> None:
    # A domain that certainly has no DNS records is accepted: deliverability is not checked.
    email = f"ada@no-such-domain-{uuid.uuid4().hex}.com"
    response = await post_register(client, email=email, password=PASSWORD)
    assert response.status_code == 201, response.text


async def test_concurrent_registrations_of_one_email(
    live_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    email = unique_email("race")
    responses = await asyncio.gather(
        *(post_register(live_client, email=email, password=PASSWORD) for _ in range(10))
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 9, [r.text for r in responses]
    for response in responses:
        if response.status_code == 409:
            assert_problem(response, 409, "email_taken")
    async with engine.connect() as conn:
        count = await conn.scalar(text("SELECT count(*) FROM users WHERE email = :e"), {"e": email})
    assert count == 1


# --- password rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "password",
    [
        "abcdefgh" + "ijklmnop",  # lower-case letters only: no composition rules
        "kq7#Zp2!",  # exactly 8 characters
        "x" * 64 + "-padding",  # long
        "P" * 1024,  # the maximum
        "пароль-ünïcødé-密码-🔐",  # any Unicode
        "with spaces in it",
        "nul\x00inside-password",
    ],
)
async def test_acceptable_passwords_register_and_log_in(client: httpx.AsyncClient, password: str) -> None:
    email = unique_email()
    response = await post_register(client, email=email, password=password)
    assert response.status_code == 201, response.text
    assert (await post_login(client, email, password)).status_code == 200


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("kq7#Zp2", "too short (7)"),
        ("é" * 7, "too short (7 characters, 14 bytes)"),
        ("", "empty"),
        ("P" * 1025, "too long"),
        ("password", "common"),
        ("Password", "common, other case"),
        ("12345678", "common"),
        ("iloveyou", "common"),
        ("qwertyuiop", "common"),
        ("trustno1", "common"),
        ("".join(chr(ord(c) + 0xFEE0) for c in "password"), "common, in full-width letters (NFKC)"),
        ("e\u0301" * 4, "8 code points, but 4 characters once composed (NFKC)"),
    ],
)
async def test_unacceptable_passwords_are_422(client: httpx.AsyncClient, password: str, reason: str) -> None:
    response = await post_register(client, email=unique_email(), password=password)
    body = assert_problem(response, 422, "invalid_input")
    assert body["errors"][0]["loc"] == ["body", "password"], reason
    assert set(body["errors"][0]) == {"loc", "msg", "type"}  # the input is never echoed


async def test_lone_surrogate_password_is_422(client: httpx.AsyncClient) -> None:
    raw = '{"email": "' + unique_email() + '", "password": "abcdefgh\\ud800"}'
    response = await client.post(
        f"{API}/auth/register", content=raw.encode(), headers={"content-type": "application/json"}
    )
    assert_problem(response, 422, "invalid_input")


@pytest.mark.parametrize(
    "prefix", ["a" * 72, "€" * 24, "p" * 71], ids=["72-ascii", "72-bytes-utf8", "71-ascii"]
)
async def test_long_passwords_are_not_truncated(client: httpx.AsyncClient, prefix: str) -> None:
    """bcrypt reads 72 bytes: two passwords equal in those must still be two passwords."""
    email = unique_email()
    await register(client, email, password=prefix + "A")

    assert (await post_login(client, email, prefix + "B")).status_code == 401
    assert (await post_login(client, email, prefix)).status_code == 401
    assert (await post_login(client, email, prefix + "A")).status_code == 200


async def test_hasher_distinguishes_the_73rd_byte() -> None:
    hasher = PasswordHasher(4)
    stored = await hasher.hash("k" * 72 + "1")
    assert (await hasher.verify("k" * 72 + "1", stored)).valid
    assert not (await hasher.verify("k" * 72 + "2", stored)).valid
    assert not (await hasher.verify("k" * 72, stored)).valid


async def test_200_char_and_non_ascii_passwords_log_in(client: httpx.AsyncClient) -> None:
    for password in ("Lg" * 100, "ñandú-über-Straße-日本語-パスワード"):
        email = unique_email()
        await register(client, email, password=password)
        tokens = await login(client, email, password)
        assert (
            await client.get(f"{API}/users/me", headers=bearer(tokens["access_token"]))
        ).status_code == 200
        assert (await post_login(client, email, password[:-1])).status_code == 401


# --- hashing -----------------------------------------------------------------------------------------


async def test_password_is_stored_as_bcrypt_with_configured_rounds(
    client: httpx.AsyncClient, db_conn: AsyncConnection, user: Account
) -> None:
    stored = await stored_hash(db_conn, user["email"])
    assert stored.startswith("$2b$04$")
    assert PASSWORD not in stored
    assert hash_rounds(stored) == 4


async def test_unknown_email_and_wrong_password_get_the_same_401(
    client: httpx.AsyncClient, user: Account
) -> None:
    wrong = await post_login(client, user["email"], "not the password at all")
    unknown = await post_login(client, unique_email("nobody"), PASSWORD)

    for response in (wrong, unknown):
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json() == CREDENTIALS_401
        assert response.headers["www-authenticate"] == "Bearer"
    assert wrong.content == unknown.content


async def test_inactive_account_login_gets_the_same_401(
    client: httpx.AsyncClient, db_conn: AsyncConnection, user: Account
) -> None:
    await db_conn.execute(text("UPDATE users SET is_active = false WHERE id = :id"), {"id": user["id"]})
    response = await post_login(client, user["email"], PASSWORD)
    assert response.status_code == 401
    assert response.json() == CREDENTIALS_401


async def test_unknown_email_login_runs_bcrypt_against_a_dummy_hash(
    client: httpx.AsyncClient, user: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = security.verify_password_sync

    def spy(password: str, password_hash: str) -> bool:
        calls.append(password_hash)
        return real(password, password_hash)

    monkeypatch.setattr(security, "verify_password_sync", spy)

    assert (await post_login(client, unique_email("nobody"), PASSWORD)).status_code == 401
    assert len(calls) == 1
    dummy = calls[0]
    assert dummy.startswith("$2b$04$")  # a real bcrypt hash at the configured cost

    assert (await post_login(client, user["email"], "wrong password!")).status_code == 401
    assert len(calls) == 2
    assert calls[1] != dummy
    assert calls[1].startswith("$2b$04$")


async def test_unknown_email_costs_about_as_much_as_a_wrong_password(
    database_url: str, engine: AsyncEngine, db_conn: AsyncConnection
) -> None:
    """At cost 10 (tens of ms per check) an unknown email must not answer visibly faster."""
    slow_app = build_test_app(make_settings(database_url, bcrypt_rounds=10), engine, db_conn)
    transport = httpx.ASGITransport(app=slow_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as slow:
        email = unique_email()
        await register(slow, email)
        wrong: list[float] = []
        unknown: list[float] = []
        for _ in range(5):
            for target, samples in ((email, wrong), (unique_email("nobody"), unknown)):
                started = time.perf_counter()
                response = await post_login(slow, target, "definitely-not-it")
                samples.append(time.perf_counter() - started)
                assert response.status_code == 401
    assert statistics.median(unknown) >= 0.5 * statistics.median(wrong), (unknown, wrong)


async def test_login_rehashes_when_the_configured_cost_changes(
    client: httpx.AsyncClient, database_url: str, engine: AsyncEngine, db_conn: AsyncConnection, user: Account
) -> None:
    before = await stored_hash(db_conn, user["email"])
    assert hash_rounds(before) == 4

    other_app = build_test_app(make_settings(database_url, bcrypt_rounds=5), engine, db_conn)
    transport = httpx.ASGITransport(app=other_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as other:
        # A failed login changes nothing.
        assert (await post_login(other, user["email"], "wrong password!")).status_code == 401
        assert await stored_hash(db_conn, user["email"]) == before

        await login(other, user["email"])
        after = await stored_hash(db_conn, user["email"])
        assert after.startswith("$2b$05$")
        assert after != before
        # Same cost again: no new hash.
        await login(other, user["email"])
        assert await stored_hash(db_conn, user["email"]) == after

    # The new hash still verifies, and going back to cost 4 re-hashes again.
    await login(client, user["email"])
    assert (await stored_hash(db_conn, user["email"])).startswith("$2b$04$")


# --- changing the password -----------------------------------------------------------------------------


async def test_change_password(client: httpx.AsyncClient, db_conn: AsyncConnection, user: Account) -> None:
    url = f"{API}/users/me/password"
    new = "a brand new passphrase"
    before = await stored_hash(db_conn, user["email"])

    wrong = await client.post(
        url, json={"current_password": "not-it-at-all", "new_password": new}, headers=user.headers
    )
    assert assert_problem(wrong, 403, "wrong_current_password")["title"] == "Wrong current password"
    weak = await client.post(
        url, json={"current_password": PASSWORD, "new_password": "password1"}, headers=user.headers
    )
    assert_problem(weak, 422, "invalid_input")
    anonymous = await client.post(url, json={"current_password": PASSWORD, "new_password": new})
    assert_problem(anonymous, 401, "unauthenticated")
    assert await stored_hash(db_conn, user["email"]) == before

    done = await client.post(
        url, json={"current_password": PASSWORD, "new_password": new}, headers=user.headers
    )
    assert done.status_code == 204
    assert done.content == b""
    assert await stored_hash(db_conn, user["email"]) != before
    # Every session ends: the old access token is refused; only the new password signs in.
    assert_problem(await client.get(f"{API}/users/me", headers=user.headers), 401, "invalid_token")
    assert (await post_login(client, user["email"], PASSWORD)).json() == CREDENTIALS_401
    assert (await post_login(client, user["email"], new)).status_code == 200
