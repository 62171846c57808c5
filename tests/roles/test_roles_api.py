"""Roles over HTTP: the catalogue, listing with holders, create, read, change and delete; built-in roles
fixed; no escalation; hostile names; every change audited with actor, before and after."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.fixtures.app import Account, create_role, make_account
from tests.fixtures.helpers import API, assert_problem
from userapi.roles.constants import CATALOGUE, Permission

ROLES = f"{API}/roles"
EVERY = sorted(p.value for p in Permission)


async def role_row(conn: AsyncConnection, name: str) -> Any:
    return (
        await conn.execute(
            text(
                "SELECT name, description, built_in, all_permissions, permissions FROM roles WHERE name = :n"
            ),
            {"n": name},
        )
    ).one_or_none()


async def events(conn: AsyncConnection, type_: str) -> list[Any]:
    rows = await conn.execute(
        text("SELECT actor_id, user_id, detail FROM auth_events WHERE type = :t ORDER BY id"), {"t": type_}
    )
    return list(rows)


# --- the catalogue and the listing -------------------------------------------------------------------


async def test_the_permission_catalogue(client: httpx.AsyncClient, admin: Account) -> None:
    response = await client.get(f"{API}/permissions", headers=admin.headers)
    assert response.status_code == 200
    assert response.json() == [{"name": p.value, "description": text} for p, text in CATALOGUE.items()]
    assert {item["name"] for item in response.json()} >= {
        "users:read",
        "users:create",
        "users:update",
        "users:delete",
        "users:manage-roles",
        "sessions:revoke",
        "mfa:reset",
        "audit:read",
        "roles:manage",
    }


def test_every_permission_has_a_one_line_description() -> None:
    assert set(CATALOGUE) == set(Permission)
    for permission, description in CATALOGUE.items():
        assert description.strip(), permission
        assert "\n" not in description, permission
        assert permission.value.count(":") == 1, permission


async def test_roles_are_listed_with_permissions_and_holders(
    client: httpx.AsyncClient, db_conn: AsyncConnection, admin: Account
) -> None:
    support = await create_role(db_conn, "users:read", description="Help desk")
    for _ in range(2):
        await make_account(client, db_conn, support)
    inactive = await make_account(client, db_conn, support)
    await db_conn.execute(text("UPDATE users SET is_active = false WHERE id = :id"), {"id": inactive["id"]})
    counts = {
        row.role: row.n
        for row in await db_conn.execute(text("SELECT role, count(*) AS n FROM users GROUP BY role"))
    }

    response = await client.get(ROLES, headers=admin.headers)

    assert response.status_code == 200
    listed = {role["name"]: role for role in response.json()}
    assert list(listed) == sorted(listed)
    assert listed[support] == {
        "name": support,
        "description": "Help desk",
        "built_in": False,
        "all_permissions": False,
        "permissions": ["users:read"],
        "user_count": 3,  # inactive holders count: they still hold it
    }
    assert listed["admin"] == {
        "name": "admin",
        "description": "Every permission, including ones added later",
        "built_in": True,
        "all_permissions": True,
        "permissions": EVERY,
        "user_count": counts.get("admin", 0),
    }
    assert listed["user"]["permissions"] == []
    assert listed["user"]["built_in"] is True
    assert listed["user"]["user_count"] == counts.get("user", 0)
    single = await client.get(f"{ROLES}/{support}", headers=admin.headers)
    assert single.json() == listed[support]


async def test_unknown_role_is_404(client: httpx.AsyncClient, admin: Account) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        response = await client.request(method, f"{ROLES}/no-such-role", json={}, headers=admin.headers)
        assert_problem(response, 404, "role_not_found")


# --- create --------------------------------------------------------------------------------------------


async def test_create_a_role(client: httpx.AsyncClient, db_conn: AsyncConnection, admin: Account) -> None:
    body = {"name": "support", "description": "Reads accounts", "permissions": ["users:update", "users:read"]}
    response = await client.post(ROLES, json=body, headers=admin.headers)

    assert response.status_code == 201, response.text
    assert response.json() == {
        "name": "support",
        "description": "Reads accounts",
        "built_in": False,
        "all_permissions": False,
        "permissions": ["users:read", "users:update"],
        "user_count": 0,
    }
    assert tuple(await role_row(db_conn, "support")) == (
        "support",
        "Reads accounts",
        False,
        False,
        ["users:read", "users:update"],
    )
    [event] = await events(db_conn, "role_created")
    assert str(event.actor_id) == admin["id"]
    assert event.detail == {
        "role": "support",
        "after": {"description": "Reads accounts", "permissions": ["users:read", "users:update"]},
    }


async def test_create_defaults_and_duplicates_merge(client: httpx.AsyncClient, admin: Account) -> None:
    bare = await client.post(ROLES, json={"name": "bare"}, headers=admin.headers)
    assert bare.status_code == 201
    assert (bare.json()["description"], bare.json()["permissions"]) == ("", [])
    twice = await client.post(
        ROLES, json={"name": "twice", "permissions": ["audit:read", "audit:read"]}, headers=admin.headers
    )
    assert twice.json()["permissions"] == ["audit:read"]


async def test_create_a_taken_name_is_409(
    client: httpx.AsyncClient, db_conn: AsyncConnection, admin: Account
) -> None:
    existing = await create_role(db_conn, "users:read")
    for name in (existing, "admin", "user"):
        response = await client.post(ROLES, json={"name": name, "permissions": []}, headers=admin.headers)
        assert_problem(response, 409, "role_name_taken")
    assert (await role_row(db_conn, existing)).permissions == ["users:read"]


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "permissions": []},  # too short
        {"name": "a" * 64},
        {"name": "Support"},
        {"name": "9lives"},
        {"name": "-dash"},
        {"name": "sup port"},
        {"name": "support\n"},
        {"name": "sup\x00port"},
        {"name": "süpport"},
        {"name": "\u210celp"},  # compatibility characters are not letters here either
        {"name": "\ud800abc"},
        {"name": "support", "permissions": ["users:reed"]},
        {"name": "support", "permissions": ["USERS:READ"]},
        {"name": "support", "permissions": ["users:read\x00"]},
        {"name": "support", "permissions": "users:read"},
        {"name": "support", "permissions": [["users:read"]]},
        {"name": "support", "permissions": ["users:read"] * 100},
        {"name": "support", "description": "a\x00b"},
        {"name": "support", "description": "d" * 201},
        {"name": "support", "description": "\udfff"},
        {"name": "support", "all_permissions": True},
        {"name": "support", "built_in": True},
        {"name": None},
        {},
    ],
    ids=repr,
)
async def test_create_invalid_is_422_and_stores_nothing(
    client: httpx.AsyncClient, db_conn: AsyncConnection, admin: Account, body: dict[str, Any]
) -> None:
    before = (await db_conn.execute(text("SELECT count(*) FROM roles"))).scalar()
    content = json.dumps(body).encode()  # lone surrogates as \\udXXX escapes, as a hostile client sends
    response = await client.post(
        ROLES, content=content, headers={**admin.headers, "content-type": "application/json"}
    )
    assert_problem(response, 422, "invalid_input")
    assert (await db_conn.execute(text("SELECT count(*) FROM roles"))).scalar() == before


@pytest.mark.parametrize(
    "name", ["Not_A_Name", "a", "x" * 64, "%00", "sup%0Aport", "%C3%BC-role", "..%2F..%2Fadmin"]
)
async def test_malformed_names_in_the_path_are_422(
    client: httpx.AsyncClient, db_conn: AsyncConnection, admin: Account, name: str
) -> None:
    before = (await db_conn.execute(text("SELECT name, permissions FROM roles ORDER BY name"))).all()
    for method in ("GET", "PATCH", "DELETE"):
        response = await client.request(method, f"{ROLES}/{name}", json={}, headers=admin.headers)
        assert response.status_code in (404, 422), response.text
        assert_problem(response, response.status_code)
    assert (await db_conn.execute(text("SELECT name, permissions FROM roles ORDER BY name"))).all() == before


# --- change ----------------------------------------------------------------------------------------------


async def test_change_description_and_permissions(
    client: httpx.AsyncClient, db_conn: AsyncConnection, admin: Account
) -> None:
    name = await create_role(db_conn, "users:read", description="old")
    url = f"{ROLES}/{name}"

    response = await client.patch(
        url, json={"permissions": ["audit:read", "users:read"]}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    assert (response.json()["description"], response.json()["permissions"]) == (
        "old",
        ["audit:read", "users:read"],
    )
    response = await client.patch(url, json={"description": "new"}, headers=admin.headers)
    assert (response.json()["description"], response.json()["permissions"]) == (
        "new",
        ["audit:read", "users:read"],
    )
    unchanged = await client.patch(url, json={}, headers=admin.headers)
    assert unchanged.json() == response.json()

    changes = await events(db_conn, "role_updated")
    assert [e.detail for e in changes] == [
        {
            "role": name,
            "before": {"description": "old", "permissions": ["users:read"]},
            "after": {"description": "old", "permissions": ["audit:read", "users:read"]},
        },
        {
            "role": name,
            "before": {"description": "old", "permissions": ["audit:read", "users:read"]},
            "after": {"description": "new", "permissions": ["audit:read", "users:read"]},
        },
    ]  # the empty PATCH changed nothing and recorded nothing
    assert {str(e.actor_id) for e in changes} == {admin["id"]}


@pytest.mark.parametrize(
    "body",
    [
        {"permissions": ["nope:nope"]},
        {"permissions": None},
        {"description": None},
        {"name": "renamed"},
        {"built_in": True},
    ],
    ids=repr,
)
async def test_change_invalid_is_422(
    client: httpx.AsyncClient, db_conn: AsyncConnection, admin: Account, body: dict[str, Any]
) -> None:
    name = await create_role(db_conn, "users:read")
    response = await client.patch(f"{ROLES}/{name}", json=body, headers=admin.headers)
    assert_problem(response, 422, "invalid_input")
    assert tuple(await role_row(db_conn, name))[1:] == ("", False, False, ["users:read"])


@pytest.mark.parametrize("name", ["admin", "user"])
async def test_built_in_roles_cannot_be_changed_or_deleted(
    client: httpx.AsyncClient, db_conn: AsyncConnection, admin: Account, name: str
) -> None:
    before = tuple(await role_row(db_conn, name))
    for body in ({"description": "mine"}, {"permissions": []}, {"permissions": EVERY}):
        assert_problem(
            await client.patch(f"{ROLES}/{name}", json=body, headers=admin.headers), 409, "built_in_role"
        )
    assert_problem(await client.delete(f"{ROLES}/{name}", headers=admin.headers), 409, "built_in_role")
    assert tuple(await role_row(db_conn, name)) == before


# --- delete ---------------------------------------------------------------------------------------------


async def test_delete_an_unused_role(
    client: httpx.AsyncClient, db_conn: AsyncConnection, admin: Account
) -> None:
    name = await create_role(db_conn, "audit:read", description="gone soon")
    response = await client.delete(f"{ROLES}/{name}", headers=admin.headers)
    assert response.status_code == 204
    assert response.content == b""
    assert await role_row(db_conn, name) is None
    assert_problem(await client.get(f"{ROLES}/{name}", headers=admin.headers), 404, "role_not_found")
    [event] = await events(db_conn, "role_deleted")
    assert str(event.actor_id) == admin["id"]
    assert event.detail == {
        "role": name,
        "before": {"description": "gone soon", "permissions": ["audit:read"]},
    }


async def test_deleting_a_role_in_use_is_409_until_nobody_holds_it(
    client: httpx.AsyncClient, db_conn: AsyncConnection, admin: Account
) -> None:
    name = await create_role(db_conn, "users:read")
    holder = await make_account(client, db_conn, name)
    # An inactive holder still holds it.
    await db_conn.execute(text("UPDATE users SET is_active = false WHERE id = :id"), {"id": holder["id"]})

    refused = await client.delete(f"{ROLES}/{name}", headers=admin.headers)
    assert "1 account(s)" in assert_problem(refused, 409, "role_in_use")["detail"]
    assert await role_row(db_conn, name) is not None

    moved = await client.patch(f"{API}/users/{holder['id']}", json={"role": "user"}, headers=admin.headers)
    assert moved.status_code == 200, moved.text
    assert (await client.delete(f"{ROLES}/{name}", headers=admin.headers)).status_code == 204


# --- no escalation: nobody grants what they do not hold ------------------------------------------------


async def test_a_role_manager_grants_only_permissions_it_holds(
    client: httpx.AsyncClient, db_conn: AsyncConnection
) -> None:
    manager = await make_account(client, db_conn, await create_role(db_conn, "roles:manage", "users:read"))
    made = await client.post(
        ROLES, json={"name": "readers", "permissions": ["users:read"]}, headers=manager.headers
    )
    assert made.status_code == 201, made.text

    grabbed = await client.post(
        ROLES,
        json={"name": "deleters", "permissions": ["users:read", "users:delete"]},
        headers=manager.headers,
    )
    assert assert_problem(grabbed, 403, "forbidden")["missing_permissions"] == ["users:delete"]
    widened = await client.patch(
        f"{ROLES}/readers", json={"permissions": ["users:read", "audit:read"]}, headers=manager.headers
    )
    assert assert_problem(widened, 403, "forbidden")["missing_permissions"] == ["audit:read"]
    assert (await role_row(db_conn, "readers")).permissions == ["users:read"]
    # Narrowing a role that holds more than the manager is not an escalation.
    wide = await create_role(db_conn, "audit:read", "users:read")
    narrowed = await client.patch(
        f"{ROLES}/{wide}", json={"permissions": ["users:read"]}, headers=manager.headers
    )
    assert narrowed.status_code == 200, narrowed.text


async def test_every_assignment_is_audited_with_actor_before_and_after(
    client: httpx.AsyncClient, db_conn: AsyncConnection, admin: Account
) -> None:
    name = await create_role(db_conn, "users:read")
    made = await client.post(
        f"{API}/users",
        json={"email": "assigned@example.com", "password": "a fine long passphrase", "role": name},
        headers=admin.headers,
    )
    assert made.status_code == 201, made.text
    user_id = made.json()["id"]
    for role in ("admin", "user"):
        assert (
            await client.patch(f"{API}/users/{user_id}", json={"role": role}, headers=admin.headers)
        ).status_code == 200
    rows = await db_conn.execute(
        text(
            "SELECT type, actor_id, detail FROM auth_events WHERE user_id = :u "
            "AND type IN ('user_created', 'role_changed') ORDER BY id"
        ),
        {"u": user_id},
    )
    assert [(r.type, str(r.actor_id), r.detail) for r in rows] == [
        ("user_created", admin["id"], {"role": name}),
        ("role_changed", admin["id"], {"old": name, "new": "admin"}),
        ("role_changed", admin["id"], {"old": "admin", "new": "user"}),
    ]
