"""Refresh-token sessions over HTTP: storage, rotation, reuse detection, logout, session ending, listing."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tests.fixtures.app import Account, build_test_app, make_account, statements_on
from tests.fixtures.helpers import API, PASSWORD, bearer, login, make_settings
from userapi.core.config import Settings

NEW_PASSWORD = "a brand new passphrase 42"


@asynccontextmanager
async def client_for(
    settings: Settings, engine: AsyncEngine, conn: AsyncConnection | None
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_test_app(settings, engine, conn))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def claims(access_token: str) -> dict[str, Any]:
    return dict(jwt.decode(access_token, options={"verify_signature": False}))


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post(f"{API}/auth/refresh", json={"refresh_token": token})


async def me_status(client: httpx.AsyncClient, access_token: str) -> int:
    return (await client.get(f"{API}/users/me", headers=bearer(access_token))).status_code


async def family_of(conn: AsyncConnection, token: str) -> uuid.UUID:
    family = await conn.scalar(
        text("SELECT family_id FROM refresh_tokens WHERE token_hash = :h"), {"h": token_hash(token)}
    )
    assert family is not None
    return uuid.UUID(str(family))


async def live_tokens(conn: AsyncConnection, family: uuid.UUID) -> int:
    return int(
        await conn.scalar(
            text("SELECT count(*) FROM refresh_tokens WHERE family_id = :f AND revoked_at IS NULL"),
            {"f": family},
        )
        or 0
    )


async def backdate_rotation(conn: AsyncConnection, token: str, seconds: int) -> None:
    """Simulate time passing since the token was rotated (instead of sleeping)."""
    result = await conn.execute(
        text(
            "UPDATE refresh_tokens SET rotated_at = rotated_at - make_interval(secs => :s) "
            "WHERE token_hash = :h AND rotated_at IS NOT NULL"
        ),
        {"s": seconds, "h": token_hash(token)},
    )
    assert result.rowcount == 1


async def events(conn: AsyncConnection, user_id: str, type_: str) -> list[Any]:
    rows = await conn.execute(
        text("SELECT * FROM auth_events WHERE user_id = :u AND type = :t ORDER BY id"),
        {"u": user_id, "t": type_},
    )
    return list(rows.mappings())


# --- storage -------------------------------------------------------------------------------------


async def test_refresh_token_is_opaque_and_stored_only_as_sha256(
    user: Account, db_conn: AsyncConnection
) -> None:
    raw = user["tokens"]["refresh_token"]
    assert raw.count(".") == 0  # not a JWT: opaque
    assert len(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))) * 8 >= 256

    rows = (
        await db_conn.execute(
            text(
                "SELECT token_hash, row_to_json(t)::text AS everything "
                "FROM refresh_tokens t WHERE user_id = :u"
            ),
            {"u": user["id"]},
        )
    ).all()
    assert len(rows) == 1
    assert bytes(rows[0].token_hash) == hashlib.sha256(raw.encode()).digest()
    # Not in any column, in any encoding a careless implementation might pick.
    assert raw not in rows[0].everything
    assert raw.encode().hex() not in rows[0].everything


async def test_access_token_carries_the_session_family(user: Account, db_conn: AsyncConnection) -> None:
    family = await family_of(db_conn, user["tokens"]["refresh_token"])
    token_claims = claims(user["tokens"]["access_token"])
    assert token_claims["sid"] == str(family)
    assert token_claims["sub"] == user["id"]
    assert isinstance(token_claims["ver"], int)


# --- rotation and reuse detection ------------------------------------------------------------------


async def test_refresh_rotates_to_a_new_pair_of_the_same_family(
    client: httpx.AsyncClient, user: Account, db_conn: AsyncConnection
) -> None:
    old = user["tokens"]
    response = await refresh(client, old["refresh_token"])
    assert response.status_code == 200, response.text
    new = response.json()
    assert new["token_type"] == "bearer"
    assert new["refresh_token"] != old["refresh_token"]
    assert new["access_token"] != old["access_token"]
    assert await family_of(db_conn, new["refresh_token"]) == await family_of(db_conn, old["refresh_token"])
    spent = await db_conn.scalar(
        text("SELECT rotated_at IS NOT NULL FROM refresh_tokens WHERE token_hash = :h"),
        {"h": token_hash(old["refresh_token"])},
    )
    assert spent is True
    assert await me_status(client, new["access_token"]) == 200
    assert (await refresh(client, new["refresh_token"])).status_code == 200


@pytest.mark.parametrize("garbage", ["nope", "x" * 43, "a" * 512])
async def test_unknown_refresh_token_is_401(client: httpx.AsyncClient, garbage: str) -> None:
    response = await refresh(client, garbage)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "invalid_refresh_token"


async def test_expired_refresh_token_is_401(
    client: httpx.AsyncClient, user: Account, db_conn: AsyncConnection
) -> None:
    await db_conn.execute(
        text("UPDATE refresh_tokens SET expires_at = now() - interval '1 second' WHERE token_hash = :h"),
        {"h": token_hash(user["tokens"]["refresh_token"])},
    )
    response = await refresh(client, user["tokens"]["refresh_token"])
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_refresh_token"
    assert await events(db_conn, user["id"], "refresh_reuse_detected") == []


async def _assert_theft_handled(
    client: httpx.AsyncClient,
    conn: AsyncConnection,
    account: Account,
    first: dict[str, Any],
    newest: dict[str, Any],
) -> None:
    """After reuse of `first`'s spent token: family revoked, every token of it dead, event recorded."""
    family = await family_of(conn, first["refresh_token"])
    assert await live_tokens(conn, family) == 0
    assert (await refresh(client, newest["refresh_token"])).status_code == 401
    assert await me_status(client, newest["access_token"]) == 401
    assert await me_status(client, first["access_token"]) == 401
    recorded = await events(conn, account["id"], "refresh_reuse_detected")
    assert len(recorded) == 1
    assert recorded[0]["detail"]["session_id"] == str(family)


async def test_reuse_after_the_interval_revokes_the_whole_family(
    client: httpx.AsyncClient, user: Account, db_conn: AsyncConnection
) -> None:
    first = user["tokens"]
    newest = (await refresh(client, first["refresh_token"])).json()
    assert await me_status(client, newest["access_token"]) == 200
    await backdate_rotation(db_conn, first["refresh_token"], 11)  # default interval is 10 s

    response = await refresh(client, first["refresh_token"])
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_refresh_token"
    await _assert_theft_handled(client, db_conn, user, first, newest)


async def test_reuse_within_the_interval_gets_a_usable_pair_of_the_same_family(
    client: httpx.AsyncClient, user: Account, db_conn: AsyncConnection
) -> None:
    first = user["tokens"]
    rotated = (await refresh(client, first["refresh_token"])).json()
    await backdate_rotation(db_conn, first["refresh_token"], 9)  # still inside the 10 s interval

    response = await refresh(client, first["refresh_token"])
    assert response.status_code == 200, response.text
    repeat = response.json()
    family = await family_of(db_conn, first["refresh_token"])
    assert await family_of(db_conn, repeat["refresh_token"]) == family
    assert claims(repeat["access_token"])["sid"] == str(family)
    # Both answers stay usable; nothing was revoked, nothing recorded as theft.
    for pair in (rotated, repeat):
        assert await me_status(client, pair["access_token"]) == 200
        assert (await refresh(client, pair["refresh_token"])).status_code == 200
    assert await events(db_conn, user["id"], "refresh_reuse_detected") == []


async def test_strict_interval_zero_treats_any_repeat_as_theft(
    settings: Settings, engine: AsyncEngine, db_conn: AsyncConnection
) -> None:
    strict = make_settings(settings.plain_database_url or "", refresh_token_reuse_interval=0)
    async with client_for(strict, engine, db_conn) as client:
        account = await make_account(client)
        first = account["tokens"]
        newest = (await refresh(client, first["refresh_token"])).json()
        response = await refresh(client, first["refresh_token"])  # at once: no grace at all
        assert response.status_code == 401
        await _assert_theft_handled(client, db_conn, account, first, newest)


async def test_interval_ten_on_the_boundary_sides(
    settings: Settings, engine: AsyncEngine, db_conn: AsyncConnection
) -> None:
    """Interval set explicitly: 8 s after rotation is a repeat, 12 s after is theft."""
    ten = make_settings(settings.plain_database_url or "", refresh_token_reuse_interval=10)
    async with client_for(ten, engine, db_conn) as client:
        account = await make_account(client)
        first = account["tokens"]
        await refresh(client, first["refresh_token"])
        await backdate_rotation(db_conn, first["refresh_token"], 8)
        assert (await refresh(client, first["refresh_token"])).status_code == 200
        await backdate_rotation(db_conn, first["refresh_token"], 4)
        newest_response = await refresh(client, first["refresh_token"])
        assert newest_response.status_code == 401
        assert await live_tokens(db_conn, await family_of(db_conn, first["refresh_token"])) == 0


async def test_other_sessions_survive_a_theft_in_one(
    client: httpx.AsyncClient, user: Account, db_conn: AsyncConnection
) -> None:
    other = await login(client, user["email"])
    first = user["tokens"]
    await refresh(client, first["refresh_token"])
    await backdate_rotation(db_conn, first["refresh_token"], 60)
    assert (await refresh(client, first["refresh_token"])).status_code == 401
    assert await me_status(client, other["access_token"]) == 200
    assert (await refresh(client, other["refresh_token"])).status_code == 200


# --- concurrency (real commits) ----------------------------------------------------------------------

N_CONCURRENT = 8


async def test_simultaneous_refreshes_within_the_interval_all_get_usable_pairs(
    live_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    account = await make_account(live_client)
    presented = account["tokens"]["refresh_token"]
    responses = await asyncio.gather(*(refresh(live_client, presented) for _ in range(N_CONCURRENT)))
    assert [r.status_code for r in responses] == [200] * N_CONCURRENT, [r.text for r in responses]
    pairs = [r.json() for r in responses]
    assert len({p["refresh_token"] for p in pairs}) == N_CONCURRENT

    async with engine.connect() as conn:
        family = await family_of(conn, presented)
        assert {await family_of(conn, p["refresh_token"]) for p in pairs} == {family}
    for pair in pairs:
        assert await me_status(live_client, pair["access_token"]) == 200
    for pair in pairs:
        assert (await refresh(live_client, pair["refresh_token"])).status_code == 200
    async with engine.connect() as conn:
        assert await live_tokens(conn, family) > 0
        assert await events(conn, account["id"], "refresh_reuse_detected") == []


@pytest.fixture
async def strict_live_client(settings: Settings, engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    strict = make_settings(settings.plain_database_url or "", refresh_token_reuse_interval=0)
    try:
        async with client_for(strict, engine, None) as client:
            yield client
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("TRUNCATE users, refresh_tokens, auth_events CASCADE"))


async def test_simultaneous_refreshes_with_interval_zero_one_wins_and_the_family_is_revoked(
    strict_live_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    client = strict_live_client
    account = await make_account(client)
    presented = account["tokens"]["refresh_token"]
    responses = await asyncio.gather(*(refresh(client, presented) for _ in range(N_CONCURRENT)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [401] * (N_CONCURRENT - 1), [r.text for r in responses]
    winner = next(r.json() for r in responses if r.status_code == 200)

    # The revocation was committed although those requests failed: a fresh connection sees it.
    async with engine.connect() as conn:
        family = await family_of(conn, presented)
        assert await live_tokens(conn, family) == 0
        assert len(await events(conn, account["id"], "refresh_reuse_detected")) == 1
    assert (await refresh(client, winner["refresh_token"])).status_code == 401
    assert await me_status(client, winner["access_token"]) == 401


# --- logout ----------------------------------------------------------------------------------------


async def test_logout_ends_the_session_and_is_idempotent(
    client: httpx.AsyncClient, user: Account, db_conn: AsyncConnection
) -> None:
    other = await login(client, user["email"])
    tokens = user["tokens"]
    body = {"refresh_token": tokens["refresh_token"]}
    first = await client.post(f"{API}/auth/logout", json=body)
    assert first.status_code == 204
    assert first.content == b""
    assert (await refresh(client, tokens["refresh_token"])).status_code == 401
    assert await me_status(client, tokens["access_token"]) == 401
    # Other sessions of the same user are untouched.
    assert await me_status(client, other["access_token"]) == 200

    assert (await client.post(f"{API}/auth/logout", json=body)).status_code == 204
    assert (await client.post(f"{API}/auth/logout", json={"refresh_token": "garbage"})).status_code == 204
    assert len(await events(db_conn, user["id"], "logout")) == 1


async def test_logout_with_a_rotated_token_ends_the_session(client: httpx.AsyncClient, user: Account) -> None:
    newest = (await refresh(client, user["tokens"]["refresh_token"])).json()
    assert (
        await client.post(f"{API}/auth/logout", json={"refresh_token": user["tokens"]["refresh_token"]})
    ).status_code == 204
    assert await me_status(client, newest["access_token"]) == 401
    assert (await refresh(client, newest["refresh_token"])).status_code == 401


@pytest.mark.parametrize("body", [{}, {"refresh_token": ""}, {"refresh_token": 5}, {"token": "x"}])
async def test_logout_with_a_malformed_body_is_422(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    response = await client.post(f"{API}/auth/logout", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


# --- events that end every session of a user ------------------------------------------------------------


async def test_wrong_current_password_is_403_and_changes_nothing(
    client: httpx.AsyncClient, user: Account
) -> None:
    response = await client.post(
        f"{API}/users/me/password",
        json={"current_password": "not the password", "new_password": NEW_PASSWORD},
        headers=user.headers,
    )
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "wrong_current_password"
    assert await me_status(client, user["tokens"]["access_token"]) == 200
    assert (await refresh(client, user["tokens"]["refresh_token"])).status_code == 200
    await login(client, user["email"], PASSWORD)


async def test_password_change_ends_every_session(client: httpx.AsyncClient, user: Account) -> None:
    second = await login(client, user["email"])
    response = await client.post(
        f"{API}/users/me/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=user.headers,
    )
    assert response.status_code == 204, response.text
    for pair in (user["tokens"], second):
        assert await me_status(client, pair["access_token"]) == 401
        assert (await refresh(client, pair["refresh_token"])).status_code == 401
    old = await client.post(f"{API}/auth/login", json={"email": user["email"], "password": PASSWORD})
    assert old.status_code == 401
    fresh = await login(client, user["email"], NEW_PASSWORD)
    assert await me_status(client, fresh["access_token"]) == 200
    sessions = (await client.get(f"{API}/auth/sessions", headers=bearer(fresh["access_token"]))).json()
    assert len(sessions) == 1


async def test_password_change_without_current_password_is_422(
    client: httpx.AsyncClient, user: Account
) -> None:
    response = await client.post(
        f"{API}/users/me/password", json={"new_password": NEW_PASSWORD}, headers=user.headers
    )
    assert response.status_code == 422


async def test_deactivation_ends_every_session_at_once(
    client: httpx.AsyncClient, user: Account, admin: Account
) -> None:
    second = await login(client, user["email"])
    response = await client.patch(
        f"{API}/users/{user['id']}", json={"is_active": False}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    for pair in (user["tokens"], second):
        assert await me_status(client, pair["access_token"]) == 401
        assert (await refresh(client, pair["refresh_token"])).status_code == 401
    denied = await client.post(f"{API}/auth/login", json={"email": user["email"], "password": PASSWORD})
    assert denied.status_code == 401

    # Reactivation does not bring the old sessions back.
    response = await client.patch(
        f"{API}/users/{user['id']}", json={"is_active": True}, headers=admin.headers
    )
    assert response.status_code == 200
    assert await me_status(client, user["tokens"]["access_token"]) == 401
    assert (await refresh(client, second["refresh_token"])).status_code == 401


async def test_deletion_ends_every_session_at_once(
    client: httpx.AsyncClient, user: Account, admin: Account
) -> None:
    second = await login(client, user["email"])
    assert (await client.delete(f"{API}/users/{user['id']}", headers=admin.headers)).status_code == 204
    for pair in (user["tokens"], second):
        assert await me_status(client, pair["access_token"]) == 401
        assert (await refresh(client, pair["refresh_token"])).status_code == 401


async def test_role_changes_apply_on_the_next_request_without_ending_sessions(
    client: httpx.AsyncClient, user: Account, admin: Account
) -> None:
    assert (await client.get(f"{API}/users", headers=user.headers)).status_code == 403
    promote = await client.patch(f"{API}/users/{user['id']}", json={"role": "admin"}, headers=admin.headers)
    assert promote.status_code == 200
    assert (await client.get(f"{API}/users", headers=user.headers)).status_code == 200

    demote = await client.patch(f"{API}/users/{user['id']}", json={"role": "user"}, headers=admin.headers)
    assert demote.status_code == 200
    assert (await client.get(f"{API}/users", headers=user.headers)).status_code == 403
    # The session itself lives on.
    assert await me_status(client, user["tokens"]["access_token"]) == 200
    assert (await refresh(client, user["tokens"]["refresh_token"])).status_code == 200


async def test_the_per_request_check_is_one_query(
    client: httpx.AsyncClient, user: Account, db_conn: AsyncConnection
) -> None:
    """User row, its role's permissions, token_version and session liveness: a single statement."""
    async with statements_on(db_conn) as statements:
        assert await me_status(client, user["tokens"]["access_token"]) == 200
    assert len(statements) == 1, statements
    assert "token_version" in statements[0]
    assert "refresh_tokens" in statements[0]
    assert "r.permissions" in statements[0]


async def test_a_route_asking_for_the_principal_and_the_user_still_checks_once(
    client: httpx.AsyncClient, user: Account, db_conn: AsyncConnection
) -> None:
    """GET /auth/sessions declares the principal; its router declares the user: one check between them."""
    async with statements_on(db_conn) as statements:
        response = await client.get(f"{API}/auth/sessions", headers=user.headers)
    assert response.status_code == 200
    checks = [s for s in statements if "FROM users u JOIN roles r" in s]
    assert len(checks) == 1, statements


# --- listing and ending sessions ------------------------------------------------------------------------


async def test_sessions_list_the_callers_active_sessions(
    settings: Settings, engine: AsyncEngine, db_conn: AsyncConnection
) -> None:
    proxied = make_settings(settings.plain_database_url or "", trusted_proxies=["127.0.0.1"])
    async with client_for(proxied, engine, db_conn) as client:
        account = await make_account(client)
        laptop = await client.post(
            f"{API}/auth/login",
            json={"email": account["email"], "password": PASSWORD},
            headers={"User-Agent": "laptop-browser/1.0", "X-Forwarded-For": "198.51.100.20"},
        )
        phone = await client.post(
            f"{API}/auth/login",
            json={"email": account["email"], "password": PASSWORD},
            headers={"User-Agent": "phone-app/2.0", "X-Forwarded-For": "203.0.113.30"},
        )
        assert laptop.status_code == phone.status_code == 200
        # Someone else's session never shows.
        await make_account(client)

        # Make the laptop session older, then use it: last_used moves, created stays.
        laptop_family = await family_of(db_conn, laptop.json()["refresh_token"])
        await db_conn.execute(
            text(
                "UPDATE refresh_tokens SET created_at = created_at - interval '1 hour' WHERE family_id = :f"
            ),
            {"f": laptop_family},
        )
        rotated = await client.post(
            f"{API}/auth/refresh",
            json={"refresh_token": laptop.json()["refresh_token"]},
            headers={"User-Agent": "laptop-browser/1.1", "X-Forwarded-For": "198.51.100.21"},
        )
        assert rotated.status_code == 200

        response = await client.get(f"{API}/auth/sessions", headers=bearer(phone.json()["access_token"]))
        assert response.status_code == 200
        sessions = {s["id"]: s for s in response.json()}
        phone_family = await family_of(db_conn, phone.json()["refresh_token"])
        first_family = await family_of(db_conn, account["tokens"]["refresh_token"])
        assert set(sessions) == {str(laptop_family), str(phone_family), str(first_family)}

        phone_row, laptop_row = sessions[str(phone_family)], sessions[str(laptop_family)]
        assert phone_row["current"] is True
        assert laptop_row["current"] is False
        assert sessions[str(first_family)]["current"] is False
        assert phone_row["user_agent"] == "phone-app/2.0"
        assert phone_row["ip"] == "203.0.113.30"
        assert laptop_row["user_agent"] == "laptop-browser/1.1"
        assert laptop_row["ip"] == "198.51.100.21"
        assert laptop_row["last_used_at"] > laptop_row["created_at"]
        for row in sessions.values():
            assert set(row) >= {
                "id",
                "created_at",
                "last_used_at",
                "expires_at",
                "user_agent",
                "ip",
                "current",
            }


async def test_sessions_need_a_signed_in_caller(client: httpx.AsyncClient) -> None:
    assert (await client.get(f"{API}/auth/sessions")).status_code == 401
    assert (await client.delete(f"{API}/auth/sessions/{uuid.uuid4()}")).status_code == 401


async def test_ending_one_session(client: httpx.AsyncClient, user: Account, db_conn: AsyncConnection) -> None:
    other = await login(client, user["email"])
    target = await family_of(db_conn, other["refresh_token"])
    response = await client.delete(f"{API}/auth/sessions/{target}", headers=user.headers)
    assert response.status_code == 204
    assert (await refresh(client, other["refresh_token"])).status_code == 401
    assert await me_status(client, other["access_token"]) == 401
    # The caller's own session is untouched, and the ended one is no longer listed.
    assert await me_status(client, user["tokens"]["access_token"]) == 200
    listed = (await client.get(f"{API}/auth/sessions", headers=user.headers)).json()
    assert [s["id"] for s in listed] == [str(await family_of(db_conn, user["tokens"]["refresh_token"]))]
    assert len(await events(db_conn, user["id"], "session_revoked")) == 1


async def test_ending_the_current_session(
    client: httpx.AsyncClient, user: Account, db_conn: AsyncConnection
) -> None:
    mine = await family_of(db_conn, user["tokens"]["refresh_token"])
    assert (await client.delete(f"{API}/auth/sessions/{mine}", headers=user.headers)).status_code == 204
    assert await me_status(client, user["tokens"]["access_token"]) == 401


async def test_another_users_or_an_unknown_session_is_404(
    client: httpx.AsyncClient, user: Account, db_conn: AsyncConnection
) -> None:
    stranger = await make_account(client)
    theirs = await family_of(db_conn, stranger["tokens"]["refresh_token"])
    for session_id in (theirs, uuid.uuid4()):
        response = await client.delete(f"{API}/auth/sessions/{session_id}", headers=user.headers)
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "session_not_found"
    # The stranger's session survived the attempt.
    assert await me_status(client, stranger["tokens"]["access_token"]) == 200
    bad = await client.delete(f"{API}/auth/sessions/not-a-uuid", headers=user.headers)
    assert bad.status_code == 422
