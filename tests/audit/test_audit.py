"""The audit trail over HTTP: what is recorded, what it holds (never a secret), and the admin listing."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tests.fixtures.app import Account, make_account
from tests.fixtures.helpers import API, PASSWORD, bearer, login, unique_email

AGENT = "audit-test-agent/3.1"
WRONG_PASSWORD = "wrong-but-secret-guess-7781"
NEW_PASSWORD = "my second fine passphrase 99"
ALL_TYPES = {
    "signup",
    "login_succeeded",
    "login_failed",
    "refresh_reuse_detected",
    "logout",
    "password_changed",
    "role_changed",
    "user_deactivated",
    "user_deleted",
}


async def trail(conn: AsyncConnection, *user_ids: str) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text(
            "SELECT e.*, row_to_json(e)::text AS everything FROM auth_events e "
            "WHERE user_id = ANY(CAST(:ids AS uuid[])) ORDER BY id"
        ),
        {"ids": list(user_ids)},
    )
    return [dict(r) for r in rows.mappings()]


async def test_security_events_are_recorded_without_secrets(
    client: httpx.AsyncClient, admin: Account, db_conn: AsyncConnection
) -> None:
    client.headers["User-Agent"] = AGENT
    secrets: list[str] = [PASSWORD, WRONG_PASSWORD, NEW_PASSWORD]
    email = unique_email("audited")
    signup = await client.post(f"{API}/auth/register", json={"email": email, "password": PASSWORD})
    assert signup.status_code == 201
    user_id = signup.json()["id"]

    failed = await client.post(f"{API}/auth/login", json={"email": email, "password": WRONG_PASSWORD})
    assert failed.status_code == 401
    first = await login(client, email)
    rotated = (
        await client.post(f"{API}/auth/refresh", json={"refresh_token": first["refresh_token"]})
    ).json()
    # Time passes past the reuse interval; then the spent token comes back.
    await db_conn.execute(
        text("UPDATE refresh_tokens SET rotated_at = rotated_at - interval '1 minute' WHERE token_hash = :h"),
        {"h": hashlib.sha256(first["refresh_token"].encode()).digest()},
    )
    reuse = await client.post(f"{API}/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reuse.status_code == 401
    second = await login(client, email)
    logout = await client.post(f"{API}/auth/logout", json={"refresh_token": second["refresh_token"]})
    assert logout.status_code == 204
    third = await login(client, email)
    changed = await client.post(
        f"{API}/users/me/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(third["access_token"]),
    )
    assert changed.status_code == 204
    fourth = await login(client, email, NEW_PASSWORD)
    for pair in (first, rotated, second, third, fourth):
        secrets += [pair["access_token"], pair["refresh_token"]]
    assert (
        await client.patch(f"{API}/users/{user_id}", json={"role": "admin"}, headers=admin.headers)
    ).status_code == 200
    assert (
        await client.patch(f"{API}/users/{user_id}", json={"is_active": False}, headers=admin.headers)
    ).status_code == 200
    assert (await client.delete(f"{API}/users/{user_id}", headers=admin.headers)).status_code == 204

    events = await trail(db_conn, user_id)
    types = [e["type"] for e in events]
    assert set(types) >= ALL_TYPES, types
    assert types[:2] == ["signup", "login_failed"]
    assert types[-3:] == ["role_changed", "user_deactivated", "user_deleted"]
    for event in events:
        assert event["ip"] == "127.0.0.1"
        assert event["user_agent"] == AGENT
        assert event["created_at"] is not None
        for secret in secrets:
            assert secret not in event["everything"], (event["type"], "holds a secret")
    by_type = {e["type"]: e for e in events}
    assert by_type["login_failed"]["detail"]["reason"] == "wrong_password"
    assert by_type["role_changed"]["detail"] == {"old": "user", "new": "admin"}
    for admin_action in ("role_changed", "user_deactivated", "user_deleted"):
        assert str(by_type[admin_action]["actor_id"]) == admin["id"]

    # The stored password hashes and token hashes are not copied into the trail either.
    hashes = (await db_conn.scalars(text("SELECT encode(token_hash, 'hex') FROM refresh_tokens"))).all() + (
        await db_conn.scalars(text("SELECT password_hash FROM users"))
    ).all()
    everything = "".join(e["everything"] for e in events)
    assert not [h for h in hashes if h in everything]


async def test_failed_login_for_an_unknown_email_is_recorded(
    client: httpx.AsyncClient, db_conn: AsyncConnection
) -> None:
    email = unique_email("ghost")
    response = await client.post(f"{API}/auth/login", json={"email": email, "password": WRONG_PASSWORD})
    assert response.status_code == 401
    row = (
        await db_conn.execute(
            text(
                "SELECT user_id, detail, row_to_json(e)::text AS everything FROM auth_events e "
                "WHERE type = 'login_failed' AND detail->>'email' = :e"
            ),
            {"e": email},
        )
    ).one()
    assert row.user_id is None
    assert row.detail["reason"] == "unknown_email"
    assert WRONG_PASSWORD not in row.everything


# --- writes that must survive an error response (real commits) -----------------------------------------


async def test_failed_login_audit_row_is_committed(
    live_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    account = await make_account(live_client)
    response = await live_client.post(
        f"{API}/auth/login", json={"email": account["email"], "password": WRONG_PASSWORD}
    )
    assert response.status_code == 401
    async with engine.connect() as fresh:
        count = await fresh.scalar(
            text("SELECT count(*) FROM auth_events WHERE user_id = :u AND type = 'login_failed'"),
            {"u": account["id"]},
        )
    assert count == 1


async def test_reuse_revocation_and_its_event_are_committed(
    live_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    account = await make_account(live_client)
    first = account["tokens"]
    newest = (
        await live_client.post(f"{API}/auth/refresh", json={"refresh_token": first["refresh_token"]})
    ).json()
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE refresh_tokens SET rotated_at = rotated_at - interval '1 minute' "
                "WHERE token_hash = :h"
            ),
            {"h": hashlib.sha256(first["refresh_token"].encode()).digest()},
        )
    reuse = await live_client.post(f"{API}/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reuse.status_code == 401
    async with engine.connect() as fresh:
        live = await fresh.scalar(
            text("SELECT count(*) FROM refresh_tokens WHERE user_id = :u AND revoked_at IS NULL"),
            {"u": account["id"]},
        )
        detected = await fresh.scalar(
            text("SELECT count(*) FROM auth_events WHERE user_id = :u AND type = 'refresh_reuse_detected'"),
            {"u": account["id"]},
        )
    assert live == 0
    assert detected == 1
    assert (
        await live_client.get(f"{API}/users/me", headers=bearer(newest["access_token"]))
    ).status_code == 401


# --- GET /audit-events ------------------------------------------------------------------------------------


async def test_audit_events_are_for_admins_only(client: httpx.AsyncClient, user: Account) -> None:
    anonymous = await client.get(f"{API}/audit-events")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    forbidden = await client.get(f"{API}/audit-events", headers=user.headers)
    assert forbidden.status_code == 403
    assert forbidden.headers["content-type"] == "application/problem+json"


async def test_audit_events_walk_pages_with_filters(
    client: httpx.AsyncClient, admin: Account, db_conn: AsyncConnection
) -> None:
    target = await make_account(client)
    for _ in range(6):
        await client.post(f"{API}/auth/login", json={"email": target["email"], "password": WRONG_PASSWORD})
    expected = (
        await db_conn.scalars(
            text("SELECT id FROM auth_events WHERE user_id = :u ORDER BY id DESC"), {"u": target["id"]}
        )
    ).all()
    assert len(expected) == 8  # signup, login_succeeded, 6 x login_failed

    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3, "user_id": target["id"]}
        if cursor:
            params["cursor"] = cursor
        response = await client.get(f"{API}/audit-events", params=params, headers=admin.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= 3
        assert all(item["user_id"] == target["id"] for item in page["items"])
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 10
    assert pages == 3
    assert seen == list(expected)  # newest first, no gaps, no repeats

    failed = await client.get(
        f"{API}/audit-events",
        params={"user_id": target["id"], "type": "login_failed", "limit": 100},
        headers=admin.headers,
    )
    assert failed.status_code == 200
    items = failed.json()["items"]
    assert len(items) == 6
    assert {i["type"] for i in items} == {"login_failed"}
    assert failed.json()["next_cursor"] is None
    first = items[0]
    assert set(first) >= {"id", "type", "user_id", "actor_id", "ip", "user_agent", "detail", "created_at"}

    by_type = await client.get(
        f"{API}/audit-events", params={"type": "signup", "limit": 100}, headers=admin.headers
    )
    assert by_type.status_code == 200
    assert {i["type"] for i in by_type.json()["items"]} == {"signup"}
    assert target["id"] in {i["user_id"] for i in by_type.json()["items"]}


def _cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "!!!"},
        {"cursor": "é"},
        {"cursor": _cursor("0")},
        {"cursor": _cursor("-5")},
        {"cursor": _cursor("abc")},
        {"cursor": _cursor(str(2**63))},
        {"cursor": _cursor("9" * 40)},
        {"cursor": "A" * 65},
        {"limit": 0},
        {"limit": 101},
        {"limit": "ten"},
        {"type": "no_such_type"},
        {"user_id": "not-a-uuid"},
    ],
)
async def test_audit_events_bad_query_is_422(
    client: httpx.AsyncClient, admin: Account, params: dict[str, Any]
) -> None:
    response = await client.get(f"{API}/audit-events", params=params, headers=admin.headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
