"""The last-admin rule with roles as data: at least one active account whose role grants roles:manage and
users:manage-roles, whatever changes (assignment, deactivation, deletion, a role's permissions), also
when the changes race each other (real commits, concurrent requests)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tests.fixtures.app import create_role, make_account
from tests.fixtures.helpers import API, assert_problem, bearer, login, register
from userapi.roles.constants import Permission

EVERY = [p.value for p in Permission]
ADMINS_SQL = (
    "SELECT count(*) FROM users u JOIN roles r ON r.name = u.role WHERE u.is_active "
    "AND (r.all_permissions OR r.permissions @> ARRAY['roles:manage', 'users:manage-roles'])"
)


async def only_admins(conn: AsyncConnection, *keep: str) -> None:
    """Every other account becomes a plain user (rows committed elsewhere must not count)."""
    await conn.execute(
        text("UPDATE users SET role = 'user' WHERE NOT (id = ANY(CAST(:k AS uuid[])))"), {"k": list(keep)}
    )


async def test_a_role_losing_what_makes_its_only_holder_an_admin_is_409(
    client: httpx.AsyncClient, db_conn: AsyncConnection
) -> None:
    ops = await create_role(db_conn, *EVERY)
    holder = await make_account(client, db_conn, ops)
    await only_admins(db_conn, holder["id"])
    for kept in (["users:manage-roles"], ["roles:manage"], []):
        response = await client.patch(
            f"{API}/roles/{ops}", json={"permissions": kept}, headers=holder.headers
        )
        body = assert_problem(response, 409, "last_admin")
        assert ops in body["detail"]
    # Losing anything else is fine, and with a second admin around so is that.
    narrowed = await client.patch(
        f"{API}/roles/{ops}",
        json={"permissions": ["roles:manage", "users:manage-roles"]},
        headers=holder.headers,
    )
    assert narrowed.status_code == 200, narrowed.text
    await make_account(client, db_conn, "admin")
    emptied = await client.patch(f"{API}/roles/{ops}", json={"permissions": []}, headers=holder.headers)
    assert emptied.status_code == 200, emptied.text


async def test_a_custom_admin_role_counts_and_half_of_one_does_not(
    client: httpx.AsyncClient, db_conn: AsyncConnection
) -> None:
    boss = await make_account(client, db_conn, "admin")
    half = await make_account(client, db_conn, await create_role(db_conn, "roles:manage", "users:read"))
    await only_admins(db_conn, boss["id"], half["id"])
    # roles:manage alone does not make an admin: the built-in admin is still the last one.
    assert_problem(
        await client.patch(f"{API}/users/{boss['id']}", json={"role": "user"}, headers=boss.headers),
        409,
        "last_admin",
    )
    full = await make_account(client, db_conn, await create_role(db_conn, *EVERY))
    demoted = await client.patch(f"{API}/users/{boss['id']}", json={"role": "user"}, headers=boss.headers)
    assert demoted.status_code == 200, demoted.text
    # Now the custom role's holder is the last admin: it cannot be deactivated, deleted or moved.
    for method, body in (("PATCH", {"is_active": False}), ("PATCH", {"role": "user"}), ("DELETE", None)):
        response = await client.request(method, f"{API}/users/{full['id']}", json=body, headers=full.headers)
        assert_problem(response, 409, "last_admin")


async def test_a_deleted_admin_role_holder_is_not_left_behind(
    client: httpx.AsyncClient, db_conn: AsyncConnection
) -> None:
    """A role in use cannot be deleted, so deleting a role never removes the last admin."""
    ops = await create_role(db_conn, *EVERY)
    holder = await make_account(client, db_conn, ops)
    await only_admins(db_conn, holder["id"])
    assert_problem(await client.delete(f"{API}/roles/{ops}", headers=holder.headers), 409, "role_in_use")


# --- races, with real commits ------------------------------------------------------------------------


async def committed_account(client: httpx.AsyncClient, engine: AsyncEngine, role: str) -> dict[str, Any]:
    account = await register(client)
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE users SET role = :r WHERE id = :id"), {"r": role, "id": account["id"]}
        )
    account["headers"] = bearer((await login(client, account["email"]))["access_token"])
    return account


async def committed_role(engine: AsyncEngine, *permissions: str) -> str:
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE users SET role = 'user'"))  # nobody else is an admin
        return await create_role(conn, *permissions)


async def admins(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text(ADMINS_SQL))).scalar_one())


@pytest.mark.parametrize("round_", range(3))
async def test_role_change_racing_a_demotion_keeps_an_admin(
    live_client: httpx.AsyncClient, engine: AsyncEngine, round_: int
) -> None:
    """A (built-in admin) strips the custom admin role of B while B demotes A: one of them wins."""
    ops = await committed_role(engine, *EVERY)
    a = await committed_account(live_client, engine, "admin")
    b = await committed_account(live_client, engine, ops)
    assert await admins(engine) == 2

    responses = await asyncio.gather(
        live_client.patch(f"{API}/roles/{ops}", json={"permissions": ["users:read"]}, headers=a["headers"]),
        live_client.patch(f"{API}/users/{a['id']}", json={"role": "user"}, headers=b["headers"]),
    )

    statuses = sorted(r.status_code for r in responses)
    # One wins; the other finds itself the last admin (409) or no longer allowed at all (403).
    assert statuses in ([200, 403], [200, 409]), [r.text for r in responses]
    assert await admins(engine) == 1


@pytest.mark.parametrize("round_", range(3))
async def test_two_admin_roles_stripping_each_other_keep_one(
    live_client: httpx.AsyncClient, engine: AsyncEngine, round_: int
) -> None:
    first_role = await committed_role(engine, *EVERY)
    second_role = await committed_role(engine, *EVERY)
    first = await committed_account(live_client, engine, first_role)
    second = await committed_account(live_client, engine, second_role)

    responses = await asyncio.gather(
        live_client.patch(f"{API}/roles/{second_role}", json={"permissions": []}, headers=first["headers"]),
        live_client.patch(f"{API}/roles/{first_role}", json={"permissions": []}, headers=second["headers"]),
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses in ([200, 403], [200, 409]), [r.text for r in responses]
    assert await admins(engine) == 1


@pytest.mark.parametrize("round_", range(3))
async def test_everything_at_once_keeps_an_admin(
    live_client: httpx.AsyncClient, engine: AsyncEngine, round_: int
) -> None:
    """Three admins (built-in and custom) demote, deactivate and delete each other and strip the custom
    role, all at once: whatever order the database picks, at least one admin is left, and nothing
    answers anything but a decision (no 500, no deadlock)."""
    ops = await committed_role(engine, *EVERY)
    accounts = [
        await committed_account(live_client, engine, "admin"),
        await committed_account(live_client, engine, ops),
        await committed_account(live_client, engine, ops),
    ]
    requests = []
    for actor in accounts:
        for target in accounts:
            if target is actor:
                continue
            requests.append(
                live_client.patch(
                    f"{API}/users/{target['id']}", json={"role": "user"}, headers=actor["headers"]
                )
            )
            requests.append(
                live_client.patch(
                    f"{API}/users/{target['id']}", json={"is_active": False}, headers=actor["headers"]
                )
            )
            requests.append(live_client.delete(f"{API}/users/{target['id']}", headers=actor["headers"]))
        requests.append(
            live_client.patch(f"{API}/roles/{ops}", json={"permissions": []}, headers=actor["headers"])
        )
    # return_exceptions: an app error must fail this test, not leave the other requests running.
    results = await asyncio.gather(*requests, return_exceptions=True)

    assert not [r for r in results if isinstance(r, BaseException)]
    responses = [r for r in results if isinstance(r, httpx.Response)]
    assert all(r.status_code in (200, 204, 401, 403, 404, 409) for r in responses), [
        (r.status_code, r.text) for r in responses if r.status_code >= 500
    ]
    assert await admins(engine) >= 1


@pytest.mark.parametrize("round_", range(3))
async def test_deleting_a_role_racing_its_assignment(
    live_client: httpx.AsyncClient, engine: AsyncEngine, round_: int
) -> None:
    """Either the role is deleted and the assignment finds no role (422), or the assignment lands and
    the role is in use (409); never both, never a foreign-key error."""
    boss = await committed_account(live_client, engine, "admin")
    target = await register(live_client)
    name = f"doomed-{uuid.uuid4().hex[:6]}"
    made = await live_client.post(f"{API}/roles", json={"name": name}, headers=boss["headers"])
    assert made.status_code == 201

    deleted, assigned = await asyncio.gather(
        live_client.delete(f"{API}/roles/{name}", headers=boss["headers"]),
        live_client.patch(f"{API}/users/{target['id']}", json={"role": name}, headers=boss["headers"]),
    )

    outcome = (deleted.status_code, assigned.status_code)
    assert outcome in ((204, 422), (409, 200)), (deleted.text, assigned.text)
    async with engine.connect() as conn:
        role = (
            await conn.execute(text("SELECT role FROM users WHERE id = :id"), {"id": target["id"]})
        ).scalar()
        exists = (
            await conn.execute(text("SELECT count(*) FROM roles WHERE name = :n"), {"n": name})
        ).scalar()
    assert (role, exists) == (("user", 0) if outcome[0] == 204 else (name, 1))
