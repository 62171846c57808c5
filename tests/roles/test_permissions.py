"""Permissions at work: a custom support role, changes acting on the very next request with the same
token, admin holding permissions added later, token claims as information only, no escalation."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import jwt
import pytest
from fastapi import APIRouter, Depends, FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tests.fixtures.app import Account, build_test_app, create_role, make_account, statements_on
from tests.fixtures.helpers import API, PASSWORD, assert_problem, bearer, login, register, unique_email
from userapi.auth.dependencies import Principal, get_current_user
from userapi.core.config import Settings
from userapi.roles import constants
from userapi.roles.constants import Permission
from userapi.roles.dependencies import require_permission

USERS = f"{API}/users"


@pytest.fixture
async def support(client: httpx.AsyncClient, db_conn: AsyncConnection) -> tuple[str, Account]:
    """A custom `support-...` role granting users:read, created over the API, and an account holding it."""
    admin = await make_account(client, db_conn, "admin")
    name = f"support-{uuid.uuid4().hex[:6]}"
    made = await client.post(
        f"{API}/roles", json={"name": name, "permissions": ["users:read"]}, headers=admin.headers
    )
    assert made.status_code == 201, made.text
    holder = await make_account(client, db_conn)
    assigned = await client.patch(f"{USERS}/{holder['id']}", json={"role": name}, headers=admin.headers)
    assert assigned.status_code == 200, assigned.text
    holder["admin"] = admin
    return name, holder


async def test_support_reads_users_but_cannot_change_or_delete_them(
    client: httpx.AsyncClient, support: tuple[str, Account]
) -> None:
    _, agent = support
    target = await register(client)

    listing = await client.get(USERS, params={"email": target["email"]}, headers=agent.headers)
    assert listing.status_code == 200, listing.text
    assert [item["id"] for item in listing.json()["items"]] == [target["id"]]
    assert (await client.get(f"{USERS}/{target['id']}", headers=agent.headers)).json()["email"] == target[
        "email"
    ]

    update = await client.patch(f"{USERS}/{target['id']}", json={"full_name": "x"}, headers=agent.headers)
    assert assert_problem(update, 403, "forbidden")["missing_permissions"] == ["users:update"]
    delete = await client.delete(f"{USERS}/{target['id']}", headers=agent.headers)
    assert assert_problem(delete, 403, "forbidden")["missing_permissions"] == ["users:delete"]
    for path in (f"{API}/roles", f"{API}/permissions", f"{API}/audit-events"):
        assert_problem(await client.get(path, headers=agent.headers), 403, "forbidden")
    assert (await client.get(f"{USERS}/{target['id']}", headers=agent.headers)).json()["full_name"] is None


async def test_granting_acts_on_the_next_request_and_revoking_too_with_the_same_token(
    client: httpx.AsyncClient, support: tuple[str, Account]
) -> None:
    name, agent = support
    admin: Account = agent["admin"]
    target = await register(client)
    url = f"{USERS}/{target['id']}"
    assert_problem(
        await client.patch(url, json={"full_name": "Before"}, headers=agent.headers), 403, "forbidden"
    )

    granted = await client.patch(
        f"{API}/roles/{name}", json={"permissions": ["users:read", "users:update"]}, headers=admin.headers
    )
    assert granted.status_code == 200, granted.text
    # The very next request, with the same access token (no new login, no refresh).
    renamed = await client.patch(url, json={"full_name": "Granted"}, headers=agent.headers)
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["full_name"] == "Granted"

    revoked = await client.patch(
        f"{API}/roles/{name}", json={"permissions": ["users:read"]}, headers=admin.headers
    )
    assert revoked.status_code == 200, revoked.text
    again = await client.patch(url, json={"full_name": "After"}, headers=agent.headers)
    assert assert_problem(again, 403, "forbidden")["missing_permissions"] == ["users:update"]
    assert (await client.get(url, headers=agent.headers)).json()["full_name"] == "Granted"
    # A role change ends no session: the same token still reads users.
    assert (await client.get(USERS, headers=agent.headers)).status_code == 200


async def test_a_changed_role_acts_on_every_holder(
    client: httpx.AsyncClient, db_conn: AsyncConnection, admin: Account
) -> None:
    name = await create_role(db_conn)
    holders = [await make_account(client, db_conn, name) for _ in range(3)]
    for holder in holders:
        assert_problem(await client.get(f"{API}/audit-events", headers=holder.headers), 403, "forbidden")
    changed = await client.patch(
        f"{API}/roles/{name}", json={"permissions": ["audit:read"]}, headers=admin.headers
    )
    assert changed.status_code == 200
    for holder in holders:
        assert (await client.get(f"{API}/audit-events", headers=holder.headers)).status_code == 200


async def test_the_permission_check_is_the_one_per_request_query(
    client: httpx.AsyncClient, db_conn: AsyncConnection
) -> None:
    """GET /permissions touches nothing but the guard: one statement reads user, role permissions,
    token version and session liveness."""
    manager = await make_account(client, db_conn, await create_role(db_conn, "roles:manage"))
    async with statements_on(db_conn) as statements:
        assert (await client.get(f"{API}/permissions", headers=manager.headers)).status_code == 200
    assert len(statements) == 1, statements
    assert "JOIN roles" in statements[0]
    assert "refresh_tokens" in statements[0]


# --- admin holds every permission, including ones added to the catalogue later ---------------------


async def test_admin_is_stored_as_a_flag_not_a_frozen_list(db_conn: AsyncConnection) -> None:
    row = (
        await db_conn.execute(
            text("SELECT all_permissions, permissions, built_in FROM roles WHERE name = 'admin'")
        )
    ).one()
    assert tuple(row) == (True, [], True)


@pytest.fixture
def catalogue_with_reports(monkeypatch: pytest.MonkeyPatch) -> str:
    """The catalogue as a later version of the code has it: one permission more."""
    monkeypatch.setattr(constants, "ALL_PERMISSIONS", constants.ALL_PERMISSIONS | {"reports:read"})
    return "reports:read"


async def test_admin_holds_a_permission_added_later_and_a_full_custom_role_does_not(
    settings: Settings,
    engine: AsyncEngine,
    db_conn: AsyncConnection,
    client: httpx.AsyncClient,
    catalogue_with_reports: str,
) -> None:
    app = build_test_app(settings, engine, db_conn)
    router = APIRouter()

    @router.get("/api/v1/reports")
    async def reports(caller: Principal = require_permission(catalogue_with_reports)) -> dict[str, str]:
        return {"id": str(caller.user.id)}

    app.include_router(router, dependencies=[Depends(get_current_user)])
    admin = await make_account(client, db_conn, "admin")
    # Every permission the catalogue had when the role was made, as a list: it does not grow.
    everything_then = await make_account(
        client, db_conn, await create_role(db_conn, *(p.value for p in Permission))
    )
    async with later(app) as http:
        assert (await http.get("/api/v1/reports", headers=admin.headers)).status_code == 200
        refused = await http.get("/api/v1/reports", headers=everything_then.headers)
        assert assert_problem(refused, 403, "forbidden")["missing_permissions"] == ["reports:read"]


def later(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


# --- access tokens carry role and permissions for other services; userapi does not trust them ------


def claims_of(token: str) -> dict[str, object]:
    # What the token says, not whether it verifies (tests/keys checks signatures against the JWKS).
    return dict(jwt.decode(token, options={"verify_signature": False}))


async def test_tokens_carry_role_and_permissions_as_information(
    client: httpx.AsyncClient, support: tuple[str, Account]
) -> None:
    name, agent = support
    tokens = await login(client, agent["email"])
    claims = claims_of(tokens["access_token"])
    assert (claims["role"], claims["permissions"]) == (name, ["users:read"])

    admin: Account = agent["admin"]
    assert claims_of(admin["tokens"]["access_token"])["permissions"] == sorted(p.value for p in Permission)
    assert claims_of(admin["tokens"]["access_token"])["role"] == "admin"
    plain = await make_account(client)
    assert (
        claims_of(plain["tokens"]["access_token"])["role"],
        claims_of(plain["tokens"]["access_token"])["permissions"],
    ) == ("user", [])

    # Refreshing issues claims as the role is now.
    await client.patch(
        f"{API}/roles/{name}", json={"permissions": ["audit:read", "users:read"]}, headers=admin.headers
    )
    refreshed = await client.post(f"{API}/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert claims_of(refreshed.json()["access_token"])["permissions"] == ["audit:read", "users:read"]


async def test_the_token_s_permissions_are_not_trusted(
    client: httpx.AsyncClient, support: tuple[str, Account], db_conn: AsyncConnection
) -> None:
    name, agent = support
    admin: Account = agent["admin"]
    # The admin's token says "every permission"; once demoted, the stored role decides.
    demoted = await make_account(client, db_conn, "admin")
    assert "users:delete" in claims_of(demoted["tokens"]["access_token"])["permissions"]
    await client.patch(f"{USERS}/{demoted['id']}", json={"role": name}, headers=admin.headers)
    target = await register(client)
    refused = await client.delete(f"{USERS}/{target['id']}", headers=demoted.headers)
    assert_problem(refused, 403, "forbidden")
    # And a token whose claims say less than the role grants still gets what the role grants.
    assert claims_of(agent["tokens"]["access_token"])["permissions"] == []  # signed in as a plain user
    assert (await client.get(USERS, headers=agent.headers)).status_code == 200


# --- no escalation through assignment or through acting on a stronger account -----------------------


async def test_nobody_assigns_a_role_granting_more_than_they_hold(
    client: httpx.AsyncClient, db_conn: AsyncConnection
) -> None:
    assigner_role = await create_role(
        db_conn, "users:read", "users:update", "users:create", "users:manage-roles"
    )
    assigner = await make_account(client, db_conn, assigner_role)
    target = await register(client)
    for role in ("admin", await create_role(db_conn, "audit:read")):
        refused = await client.patch(f"{USERS}/{target['id']}", json={"role": role}, headers=assigner.headers)
        assert_problem(refused, 403, "forbidden")
        created = await client.post(
            USERS,
            json={"email": unique_email(), "password": PASSWORD, "role": role},
            headers=assigner.headers,
        )
        assert_problem(created, 403, "forbidden")
    # Its own role, or a weaker one, it may assign.
    for role in (assigner_role, await create_role(db_conn, "users:read"), "user"):
        allowed = await client.patch(f"{USERS}/{target['id']}", json={"role": role}, headers=assigner.headers)
        assert allowed.status_code == 200, allowed.text
    assert (await client.get(f"{USERS}/{target['id']}", headers=assigner.headers)).json()["role"] == "user"


async def test_nobody_changes_deletes_or_signs_out_an_account_holding_more(
    client: httpx.AsyncClient, db_conn: AsyncConnection
) -> None:
    helpdesk = await make_account(
        client,
        db_conn,
        await create_role(db_conn, "users:read", "users:update", "users:delete", "sessions:revoke"),
    )
    boss = await make_account(client, db_conn, "admin")
    for method, path, body in (
        ("PATCH", f"{USERS}/{boss['id']}", {"is_active": False}),
        ("PATCH", f"{USERS}/{boss['id']}", {"full_name": "Pwned"}),
        ("DELETE", f"{USERS}/{boss['id']}", None),
        ("DELETE", f"{USERS}/{boss['id']}/sessions", None),
    ):
        response = await client.request(method, path, json=body, headers=helpdesk.headers)
        assert "users:manage-roles" in assert_problem(response, 403, "forbidden")["missing_permissions"]
    assert (await client.get(f"{USERS}/me", headers=boss.headers)).json()["full_name"] is None
    # An account holding no more than the helpdesk is fair game.
    peer = await register(client)
    assert (
        await client.patch(f"{USERS}/{peer['id']}", json={"is_active": False}, headers=helpdesk.headers)
    ).status_code == 200


async def test_listing_and_ending_one_session_of_an_account(
    client: httpx.AsyncClient, db_conn: AsyncConnection, admin: Account
) -> None:
    """The console's "End" on one session, over the API: the other sessions go on."""
    target = await make_account(client, db_conn)
    lost_phone = await login(client, target["email"])
    listed = await client.get(f"{USERS}/{target['id']}/sessions", headers=admin.headers)
    assert listed.status_code == 200, listed.text
    assert len(listed.json()) == 2
    assert not any(session["current"] for session in listed.json())
    mine = (await client.get(f"{API}/auth/sessions", headers=bearer(lost_phone["access_token"]))).json()
    phone_session = next(s["id"] for s in mine if s["current"])

    ended = await client.delete(f"{USERS}/{target['id']}/sessions/{phone_session}", headers=admin.headers)
    assert ended.status_code == 204, ended.text
    assert_problem(await client.get(f"{USERS}/me", headers=bearer(lost_phone["access_token"])), 401)
    assert (await client.get(f"{USERS}/me", headers=target.headers)).status_code == 200
    event = (
        await db_conn.execute(
            text("SELECT actor_id, detail FROM auth_events WHERE type = 'session_revoked' AND user_id = :u"),
            {"u": target["id"]},
        )
    ).one()
    assert (str(event.actor_id), event.detail) == (admin["id"], {"session_id": phone_session})
    # Spent, unknown or another account's session: 404, nothing else ends.
    again = await client.delete(f"{USERS}/{target['id']}/sessions/{phone_session}", headers=admin.headers)
    assert_problem(again, 404, "session_not_found")
    assert_problem(
        await client.delete(
            f"{USERS}/{admin['id']}/sessions/{target_session(mine, phone_session)}", headers=admin.headers
        ),
        404,
        "session_not_found",
    )
    assert (await client.get(f"{USERS}/me", headers=target.headers)).status_code == 200


def target_session(sessions: list[dict[str, Any]], other_than: str) -> str:
    return next(s["id"] for s in sessions if s["id"] != other_than)


async def test_ending_every_session_of_an_account(
    client: httpx.AsyncClient, db_conn: AsyncConnection, admin: Account
) -> None:
    target = await make_account(client, db_conn)
    second = await login(client, target["email"])
    response = await client.delete(f"{USERS}/{target['id']}/sessions", headers=admin.headers)
    assert response.status_code == 204
    for pair in (target["tokens"], second):
        assert_problem(
            await client.get(f"{USERS}/me", headers={"Authorization": f"Bearer {pair['access_token']}"}),
            401,
            "invalid_token",
        )
        refreshed = await client.post(f"{API}/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert_problem(refreshed, 401, "invalid_refresh_token")
    # The account stays active: it signs in again.
    assert (await login(client, target["email"]))["access_token"]
    event = (
        await db_conn.execute(
            text("SELECT actor_id, detail FROM auth_events WHERE type = 'sessions_revoked' AND user_id = :u"),
            {"u": target["id"]},
        )
    ).one()
    assert (str(event.actor_id), event.detail) == (admin["id"], {})
    assert_problem(
        await client.delete(f"{USERS}/{uuid.uuid4()}/sessions", headers=admin.headers), 404, "user_not_found"
    )
