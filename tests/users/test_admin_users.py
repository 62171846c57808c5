"""Admin user management (list, create, get, update, delete), the last-admin guard, and PATCH /users/me."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tests.fixtures.app import Account, make_account
from tests.fixtures.helpers import (
    API,
    PASSWORD,
    USER_FIELDS,
    assert_problem,
    bearer,
    login,
    register,
    unique_email,
)

USERS = f"{API}/users"


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def only_admin(conn: AsyncConnection, admin: Account) -> None:
    """Make `admin` the only active admin (rows committed by other tests must not count)."""
    await conn.execute(
        text("UPDATE users SET role = 'user' WHERE role <> 'user' AND id <> :id"), {"id": admin["id"]}
    )


async def row(conn: AsyncConnection, user_id: str) -> Any:
    return (
        await conn.execute(
            text("SELECT email, role::text AS role, is_active, full_name FROM users WHERE id = :id"),
            {"id": user_id},
        )
    ).one_or_none()


# --- list ------------------------------------------------------------------------------------------


async def make_named(client: httpx.AsyncClient, prefix: str, count: int) -> list[dict[str, Any]]:
    return [await register(client, f"{prefix}-{i}@example.com") for i in range(count)]


async def walk(client: httpx.AsyncClient, admin: Account, **params: Any) -> tuple[list[dict[str, Any]], int]:
    items: list[dict[str, Any]] = []
    pages = 0
    cursor = None
    while True:
        query = dict(params) | ({"cursor": cursor} if cursor else {})
        response = await client.get(USERS, params=query, headers=admin.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"items", "next_cursor"}
        pages += 1
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items, pages
        assert pages < 1000


async def test_walk_all_pages_with_limit_2(
    client: httpx.AsyncClient, db_conn: AsyncConnection, admin: Account
) -> None:
    prefix = f"walk-{uuid.uuid4().hex[:8]}"
    created = await make_named(client, prefix, 7)

    items, pages = await walk(client, admin, limit=2, email=prefix)

    assert pages == 4
    ids = [item["id"] for item in items]
    assert len(ids) == len(set(ids)) == 7
    assert set(ids) == {user["id"] for user in created}
    expected = (
        await db_conn.execute(
            text("SELECT id::text FROM users WHERE email LIKE :p ORDER BY created_at, id"),
            {"p": prefix + "%"},
        )
    ).scalars()
    assert ids == list(expected)
    assert all(set(item) == USER_FIELDS for item in items)


async def test_walk_everything_matches_the_database_order(
    client: httpx.AsyncClient, db_conn: AsyncConnection, admin: Account
) -> None:
    await make_named(client, f"all-{uuid.uuid4().hex[:8]}", 4)
    items, _ = await walk(client, admin, limit=3)
    expected = (await db_conn.execute(text("SELECT id::text FROM users ORDER BY created_at, id"))).scalars()
    assert [item["id"] for item in items] == list(expected)


async def test_list_page_sizes(client: httpx.AsyncClient, admin: Account) -> None:
    prefix = f"size-{uuid.uuid4().hex[:8]}"
    await make_named(client, prefix, 21)

    default = (await client.get(USERS, params={"email": prefix}, headers=admin.headers)).json()
    assert len(default["items"]) == 20
    assert default["next_cursor"] is not None
    rest = await client.get(
        USERS, params={"email": prefix, "cursor": default["next_cursor"]}, headers=admin.headers
    )
    assert len(rest.json()["items"]) == 1
    assert rest.json()["next_cursor"] is None

    one = (await client.get(USERS, params={"email": prefix, "limit": 1}, headers=admin.headers)).json()
    assert len(one["items"]) == 1
    hundred = (await client.get(USERS, params={"email": prefix, "limit": 100}, headers=admin.headers)).json()
    assert len(hundred["items"]) == 21
    assert hundred["next_cursor"] is None


async def test_list_filters_by_role_and_email_prefix(
    client: httpx.AsyncClient, db_conn: AsyncConnection, admin: Account
) -> None:
    tag = uuid.uuid4().hex[:8]
    users = await make_named(client, f"filt-{tag}", 3)
    await db_conn.execute(text("UPDATE users SET role = 'admin' WHERE id = :id"), {"id": users[1]["id"]})
    underscore = await register(client, f"a_b-{tag}@example.com")
    await register(client, f"axb-{tag}@example.com")

    async def emails(**params: Any) -> list[str]:
        response = await client.get(USERS, params=params, headers=admin.headers)
        assert response.status_code == 200, response.text
        return sorted(item["email"] for item in response.json()["items"])

    assert await emails(email=f"filt-{tag}", role="admin") == [users[1]["email"]]
    assert await emails(email=f"filt-{tag}", role="user") == sorted([users[0]["email"], users[2]["email"]])
    # The prefix is trimmed and lower-cased like stored emails; LIKE wildcards in it are literal.
    assert await emails(email=f"  FILT-{tag}-1 ") == [users[1]["email"]]
    assert await emails(email="a_b-" + tag) == [underscore["email"]]
    assert await emails(email="a%") == []
    assert await emails(email=f"nobody-{tag}") == []
    everyone_admin = await client.get(USERS, params={"role": "admin", "limit": 100}, headers=admin.headers)
    assert all(item["role"] == "admin" for item in everyone_admin.json()["items"])
    assert admin["id"] in {item["id"] for item in everyone_admin.json()["items"]}


async def test_list_filter_by_a_role_nobody_has_is_an_empty_page(
    client: httpx.AsyncClient, admin: Account
) -> None:
    # A filter is a question, not a reference: a well-formed name no role has matches nobody.
    response = await client.get(USERS, params={"role": "no-such-role"}, headers=admin.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"items": [], "next_cursor": None}


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 101},
        {"limit": -1},
        {"limit": "abc"},
        {"limit": 1.5},
        {"role": "r"},
        {"role": "ADMIN"},
        {"role": "x" * 64},
        {"role": "a\x00b"},
        {"role": "admin\n"},
        {"cursor": "c" * 201},
        {"email": "x" * 321},
        {"email": "a\x00b"},
    ],
    ids=repr,
)
async def test_list_bad_query_is_422(
    client: httpx.AsyncClient, admin: Account, params: dict[str, Any]
) -> None:
    response = await client.get(USERS, params=params, headers=admin.headers)
    body = assert_problem(response, 422, "invalid_input")
    assert body["errors"][0]["loc"][0] == "query"


NOW = "2024-05-01T12:00:00+00:00"
# Fixed, so parametrized ids are the same in every pytest-xdist worker.
SOME_ID = "0b8a3e4e-8d0a-4f55-9f6c-2f8f1c2a7b11"


@pytest.mark.parametrize(
    "cursor",
    [
        "abc",
        "!!!!",
        "%%%",
        b64(b"\xff\xfe garbage \x00"),
        b64(b"[]"),
        b64(b"{}"),
        b64(b'{"a": 1, "b": 2}'),
        b64(b"12345"),
        b64(b'"ab"'),
        b64(b"null"),
        b64(json.dumps([NOW]).encode()),
        b64(json.dumps([NOW, "not-a-uuid"]).encode()),
        b64(json.dumps([NOW, 5]).encode()),
        b64(json.dumps([NOW, [1, 2]]).encode()),
        b64(json.dumps([NOW, None]).encode()),
        b64(json.dumps([5, SOME_ID]).encode()),
        b64(json.dumps(["yesterday", SOME_ID]).encode()),
        b64(json.dumps(["2024-05-01T12:00:00", SOME_ID]).encode()),  # no time zone
        b64(json.dumps(["0001-01-01T00:00:00+14:00", SOME_ID]).encode()),  # before year 1 in UTC
        b64(json.dumps([NOW, SOME_ID, "extra"]).encode()),
    ],
)
async def test_forged_cursor_is_422(client: httpx.AsyncClient, admin: Account, cursor: str) -> None:
    response = await client.get(USERS, params={"cursor": cursor}, headers=admin.headers)
    assert assert_problem(response, 422, "invalid_cursor") == {
        "type": "https://userapi.dev/problems/invalid_cursor",
        "title": "Invalid cursor",
        "status": 422,
        "detail": "The cursor is not one this service issued",
        "code": "invalid_cursor",
    }


async def test_a_well_formed_cursor_of_our_own_shape_works(client: httpx.AsyncClient, admin: Account) -> None:
    # A far-future position: valid shape, nothing after it.
    cursor = b64(json.dumps(["9999-01-01T00:00:00+00:00", str(uuid.uuid4())]).encode())
    response = await client.get(USERS, params={"cursor": cursor}, headers=admin.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"items": [], "next_cursor": None}


# --- create -----------------------------------------------------------------------------------------


async def test_admin_creates_a_user_with_a_role(
    client: httpx.AsyncClient, db_conn: AsyncConnection, admin: Account
) -> None:
    email = unique_email("made")
    response = await client.post(
        USERS,
        json={
            "email": f" {email.upper()} ",
            "password": PASSWORD,
            "full_name": "Made Admin",
            "role": "admin",
        },
        headers=admin.headers,
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == USER_FIELDS
    assert (body["email"], body["role"], body["is_active"], body["full_name"]) == (
        email,
        "admin",
        True,
        "Made Admin",
    )
    assert (await row(db_conn, body["id"])).role == "admin"
    # The new admin can sign in and use admin routes.
    tokens = await login(client, email)
    assert (await client.get(USERS, headers=bearer(tokens["access_token"]))).status_code == 200


async def test_admin_creates_an_inactive_user_with_the_default_role(
    client: httpx.AsyncClient, admin: Account
) -> None:
    email = unique_email()
    response = await client.post(
        USERS, json={"email": email, "password": PASSWORD, "is_active": False}, headers=admin.headers
    )
    assert response.status_code == 201, response.text
    assert (response.json()["role"], response.json()["is_active"]) == ("user", False)
    refused = await client.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD})
    assert_problem(refused, 401, "invalid_credentials")


async def test_admin_create_duplicate_email_is_409(
    client: httpx.AsyncClient, admin: Account, user: Account
) -> None:
    response = await client.post(
        USERS, json={"email": user["email"].upper(), "password": PASSWORD}, headers=admin.headers
    )
    assert_problem(response, 409, "email_taken")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"email": "nope", "password": PASSWORD},
        {"email": "a@example.com", "password": "short"},
        {"email": "a@example.com", "password": "password1"},
        {"email": "a@example.com", "password": PASSWORD, "role": "Root"},
        {"email": "a@example.com", "password": PASSWORD, "role": None},
        {"email": "a@example.com", "password": PASSWORD, "id": str(uuid.uuid4())},
        {"email": "a@example.com", "password": PASSWORD, "full_name": "x" * 201},
    ],
    ids=[
        "empty",
        "bad-email",
        "short-password",
        "common-password",
        "bad-role",
        "null-role",
        "id",
        "long-name",
    ],
)
async def test_admin_create_invalid_is_422(
    client: httpx.AsyncClient, admin: Account, body: dict[str, Any]
) -> None:
    assert_problem(await client.post(USERS, json=body, headers=admin.headers), 422, "invalid_input")


async def test_creating_or_assigning_a_role_that_does_not_exist_is_422_unknown_role(
    client: httpx.AsyncClient, db_conn: AsyncConnection, admin: Account, user: Account
) -> None:
    email = unique_email()
    created = await client.post(
        USERS, json={"email": email, "password": PASSWORD, "role": "no-such-role"}, headers=admin.headers
    )
    assert "no-such-role" in assert_problem(created, 422, "unknown_role")["detail"]
    assert (
        await db_conn.execute(text("SELECT count(*) FROM users WHERE email = :e"), {"e": email})
    ).scalar() == 0
    before = tuple(await row(db_conn, user["id"]))
    assigned = await client.patch(
        f"{USERS}/{user['id']}", json={"role": "no-such-role"}, headers=admin.headers
    )
    assert_problem(assigned, 422, "unknown_role")
    assert tuple(await row(db_conn, user["id"])) == before


# --- get ---------------------------------------------------------------------------------------------


async def test_admin_gets_a_user(client: httpx.AsyncClient, admin: Account, user: Account) -> None:
    response = await client.get(f"{USERS}/{user['id']}", headers=admin.headers)
    assert response.status_code == 200
    assert response.json() == {k: user[k] for k in USER_FIELDS}


async def test_get_unknown_user_is_404(client: httpx.AsyncClient, admin: Account) -> None:
    unknown = uuid.uuid4()
    body = assert_problem(
        await client.get(f"{USERS}/{unknown}", headers=admin.headers), 404, "user_not_found"
    )
    assert body == {
        "type": "https://userapi.dev/problems/user_not_found",
        "title": "User not found",
        "status": 404,
        "detail": f"No user with id {unknown}",
        "code": "user_not_found",
    }


@pytest.mark.parametrize("bad_id", ["abc", "123", "not-a-uuid-at-all", SOME_ID[:-1]])
async def test_get_non_uuid_is_422(client: httpx.AsyncClient, admin: Account, bad_id: str) -> None:
    body = assert_problem(await client.get(f"{USERS}/{bad_id}", headers=admin.headers), 422, "invalid_input")
    assert body["errors"][0]["loc"] == ["path", "user_id"]


@pytest.mark.parametrize("kind", ["existing", "unknown", "not-a-uuid", "self"])
async def test_non_admin_probing_user_ids_gets_403_before_404(
    client: httpx.AsyncClient, user: Account, kind: str
) -> None:
    other = await make_account(client)
    targets = {"existing": other["id"], "unknown": str(uuid.uuid4()), "not-a-uuid": "abc", "self": user["id"]}
    target = targets[kind]
    for method in ("GET", "PATCH", "DELETE"):
        response = await client.request(method, f"{USERS}/{target}", json={}, headers=user.headers)
        assert_problem(response, 403, "forbidden")
    anonymous = await client.get(f"{USERS}/{target}")
    assert_problem(anonymous, 401, "unauthenticated")


# --- update ---------------------------------------------------------------------------------------------


async def test_admin_updates_role_activity_and_name(
    client: httpx.AsyncClient, db_conn: AsyncConnection, admin: Account, user: Account
) -> None:
    url = f"{USERS}/{user['id']}"
    response = await client.patch(url, json={"full_name": "  Grace Hopper  "}, headers=admin.headers)
    assert response.status_code == 200, response.text
    assert response.json()["full_name"] == "Grace Hopper"
    assert response.json()["role"] == "user"

    response = await client.patch(url, json={"role": "admin", "is_active": False}, headers=admin.headers)
    assert response.status_code == 200, response.text
    assert (response.json()["role"], response.json()["is_active"]) == ("admin", False)
    assert response.json()["full_name"] == "Grace Hopper"  # untouched fields stay
    assert tuple(await row(db_conn, user["id"])) == (user["email"], "admin", False, "Grace Hopper")

    response = await client.patch(url, json={"is_active": True, "full_name": None}, headers=admin.headers)
    assert response.status_code == 200
    assert (response.json()["is_active"], response.json()["full_name"]) == (True, None)
    assert (await client.get(url, headers=admin.headers)).json() == response.json()


async def test_admin_update_with_empty_body_changes_nothing(
    client: httpx.AsyncClient, db_conn: AsyncConnection, admin: Account, user: Account
) -> None:
    response = await client.patch(f"{USERS}/{user['id']}", json={}, headers=admin.headers)
    assert response.status_code == 200
    assert {k: response.json()[k] for k in ("email", "role", "is_active", "full_name")} == {
        k: user[k] for k in ("email", "role", "is_active", "full_name")
    }


@pytest.mark.parametrize(
    "body",
    [
        {"role": "Root"},
        {"role": "x" * 64},
        {"is_active": "maybe"},
        {"email": "new@example.com"},
        {"password": PASSWORD},
        {"full_name": "a\x00b"},
        {"full_name": "x" * 201},
        {"token_version": 5},
    ],
    ids=["role", "long-role", "is_active", "email", "password", "nul", "long-name", "token_version"],
)
async def test_admin_update_invalid_is_422_and_changes_nothing(
    client: httpx.AsyncClient, db_conn: AsyncConnection, admin: Account, user: Account, body: dict[str, Any]
) -> None:
    before = tuple(await row(db_conn, user["id"]))
    assert_problem(
        await client.patch(f"{USERS}/{user['id']}", json=body, headers=admin.headers), 422, "invalid_input"
    )
    assert tuple(await row(db_conn, user["id"])) == before


async def test_admin_update_unknown_user_is_404(client: httpx.AsyncClient, admin: Account) -> None:
    response = await client.patch(f"{USERS}/{uuid.uuid4()}", json={"full_name": "x"}, headers=admin.headers)
    assert_problem(response, 404, "user_not_found")


# --- delete ---------------------------------------------------------------------------------------------


async def test_admin_deletes_a_user(
    client: httpx.AsyncClient, db_conn: AsyncConnection, admin: Account, user: Account
) -> None:
    url = f"{USERS}/{user['id']}"
    response = await client.delete(url, headers=admin.headers)
    assert response.status_code == 204
    assert response.content == b""
    assert await row(db_conn, user["id"]) is None
    assert_problem(await client.get(url, headers=admin.headers), 404, "user_not_found")
    assert_problem(await client.delete(url, headers=admin.headers), 404, "user_not_found")
    # The email is free again.
    assert (
        await client.post(f"{API}/auth/register", json={"email": user["email"], "password": PASSWORD})
    ).status_code == 201


async def test_delete_non_uuid_is_422(client: httpx.AsyncClient, admin: Account) -> None:
    assert_problem(await client.delete(f"{USERS}/abc", headers=admin.headers), 422, "invalid_input")


# --- the last active admin -------------------------------------------------------------------------------

LAST_ADMIN_ACTIONS = {
    "demote": ("PATCH", {"role": "user"}, "demoted"),
    "deactivate": ("PATCH", {"is_active": False}, "deactivated"),
    "demote-and-deactivate": ("PATCH", {"role": "user", "is_active": False}, "demoted"),
    "delete": ("DELETE", None, "deleted"),
}


@pytest.mark.parametrize("action", list(LAST_ADMIN_ACTIONS))
async def test_last_active_admin_is_kept(
    client: httpx.AsyncClient, db_conn: AsyncConnection, admin: Account, action: str
) -> None:
    await only_admin(db_conn, admin)
    method, body, verb = LAST_ADMIN_ACTIONS[action]

    response = await client.request(method, f"{USERS}/{admin['id']}", json=body, headers=admin.headers)

    assert assert_problem(response, 409, "last_admin") == {
        "type": "https://userapi.dev/problems/last_admin",
        "title": "Last active admin",
        "status": 409,
        "detail": f"The last active admin cannot be {verb}; promote another admin first",
        "code": "last_admin",
    }
    assert tuple(await row(db_conn, admin["id"]))[1:3] == ("admin", True)
    assert (await client.get(USERS, headers=admin.headers)).status_code == 200


async def test_inactive_admins_do_not_count(
    client: httpx.AsyncClient, db_conn: AsyncConnection, admin: Account
) -> None:
    await only_admin(db_conn, admin)
    dormant = await make_account(client, db_conn, "admin")
    await db_conn.execute(text("UPDATE users SET is_active = false WHERE id = :id"), {"id": dormant["id"]})
    response = await client.patch(f"{USERS}/{admin['id']}", json={"role": "user"}, headers=admin.headers)
    assert_problem(response, 409, "last_admin")


async def test_last_admin_may_keep_its_role_and_rename_itself(
    client: httpx.AsyncClient, db_conn: AsyncConnection, admin: Account
) -> None:
    await only_admin(db_conn, admin)
    response = await client.patch(
        f"{USERS}/{admin['id']}",
        json={"role": "admin", "is_active": True, "full_name": "Root"},
        headers=admin.headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["full_name"] == "Root"


async def test_with_two_admins_one_may_go_then_the_other_is_kept(
    client: httpx.AsyncClient, db_conn: AsyncConnection, admin: Account
) -> None:
    await only_admin(db_conn, admin)
    second = await make_account(client, db_conn, "admin")

    response = await client.patch(f"{USERS}/{second['id']}", json={"role": "user"}, headers=admin.headers)
    assert response.status_code == 200, response.text
    assert_problem(await client.delete(f"{USERS}/{admin['id']}", headers=admin.headers), 409, "last_admin")

    # An admin may also step down itself while another admin remains.
    third = await make_account(client, db_conn, "admin")
    response = await client.patch(f"{USERS}/{admin['id']}", json={"role": "user"}, headers=admin.headers)
    assert response.status_code == 200, response.text
    assert_problem(await client.get(USERS, headers=admin.headers), 403, "forbidden")
    assert_problem(
        await client.patch(f"{USERS}/{third['id']}", json={"is_active": False}, headers=third.headers),
        409,
        "last_admin",
    )


@pytest.mark.parametrize("round_", range(3))
async def test_simultaneous_demotion_of_the_last_two_admins(
    live_client: httpx.AsyncClient, engine: AsyncEngine, round_: int
) -> None:
    first = await register(live_client)
    second = await register(live_client)
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE users SET role = 'user' WHERE role = 'admin'"))
        await conn.execute(
            text("UPDATE users SET role = 'admin' WHERE id IN (:a, :b)"),
            {"a": first["id"], "b": second["id"]},
        )
    tokens = [await login(live_client, first["email"]), await login(live_client, second["email"])]

    responses = await asyncio.gather(
        live_client.patch(
            f"{USERS}/{second['id']}", json={"role": "user"}, headers=bearer(tokens[0]["access_token"])
        ),
        live_client.patch(
            f"{USERS}/{first['id']}", json={"role": "user"}, headers=bearer(tokens[1]["access_token"])
        ),
    )

    statuses = sorted(r.status_code for r in responses)
    # One wins; the other either finds itself the last admin (409) or was already demoted (403).
    assert statuses in ([200, 403], [200, 409]), [r.text for r in responses]
    async with engine.connect() as conn:
        admins = await conn.scalar(text("SELECT count(*) FROM users WHERE role = 'admin' AND is_active"))
    assert admins == 1


@pytest.mark.parametrize("field", ["role", "is_active"])
async def test_simultaneous_self_and_cross_removal_keeps_an_admin(
    live_client: httpx.AsyncClient, engine: AsyncEngine, field: str
) -> None:
    """Both admins remove the *other* by deactivation/demotion and themselves at once: one admin stays."""
    accounts = [await register(live_client) for _ in range(2)]
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE users SET role = 'user' WHERE role = 'admin'"))
        await conn.execute(
            text("UPDATE users SET role = 'admin' WHERE id IN (:a, :b)"),
            {"a": accounts[0]["id"], "b": accounts[1]["id"]},
        )
    tokens = [await login(live_client, a["email"]) for a in accounts]
    body = {"role": "user"} if field == "role" else {"is_active": False}
    requests = [
        live_client.patch(f"{USERS}/{target['id']}", json=body, headers=bearer(token["access_token"]))
        for token in tokens
        for target in accounts
    ]
    responses = await asyncio.gather(*requests)

    assert all(r.status_code in (200, 401, 403, 409) for r in responses), [r.text for r in responses]
    async with engine.connect() as conn:
        admins = await conn.scalar(text("SELECT count(*) FROM users WHERE role = 'admin' AND is_active"))
    assert admins == 1


# --- PATCH /users/me ------------------------------------------------------------------------------------


async def test_me_returns_the_caller(client: httpx.AsyncClient, user: Account) -> None:
    response = await client.get(f"{USERS}/me", headers=user.headers)
    assert response.status_code == 200
    assert response.json() == {k: user[k] for k in USER_FIELDS}


async def test_patch_me_changes_full_name(
    client: httpx.AsyncClient, db_conn: AsyncConnection, user: Account
) -> None:
    response = await client.patch(f"{USERS}/me", json={"full_name": "  Ada Byron "}, headers=user.headers)
    assert response.status_code == 200, response.text
    assert response.json()["full_name"] == "Ada Byron"
    assert (await row(db_conn, user["id"])).full_name == "Ada Byron"
    assert (await client.get(f"{USERS}/me", headers=user.headers)).json()["full_name"] == "Ada Byron"

    cleared = await client.patch(f"{USERS}/me", json={"full_name": None}, headers=user.headers)
    assert cleared.json()["full_name"] is None
    unchanged = await client.patch(f"{USERS}/me", json={}, headers=user.headers)
    assert unchanged.status_code == 200
    assert unchanged.json()["full_name"] is None


@pytest.mark.parametrize(
    "body",
    [
        {"role": "admin"},
        {"is_active": False},
        {"email": "new@example.com"},
        {"full_name": "Sneaky", "role": "admin"},
        {"full_name": "Sneaky", "is_active": False},
        {"full_name": "Sneaky", "email": "new@example.com"},
        {"full_name": "Sneaky", "password": "new password here"},
        {"full_name": "Sneaky", "id": SOME_ID},
        {"full_name": "a\x00b"},
        {"full_name": "x" * 201},
        {"full_name": 42},
    ],
    ids=repr,
)
async def test_patch_me_refuses_other_fields_and_changes_nothing(
    client: httpx.AsyncClient, db_conn: AsyncConnection, user: Account, body: dict[str, Any]
) -> None:
    before = tuple(await row(db_conn, user["id"]))
    response = await client.patch(f"{USERS}/me", json=body, headers=user.headers)
    assert_problem(response, 422, "invalid_input")
    assert tuple(await row(db_conn, user["id"])) == before
    assert (await client.get(f"{USERS}/me", headers=user.headers)).json() == {k: user[k] for k in USER_FIELDS}


async def test_patch_me_non_json_body_is_422(client: httpx.AsyncClient, user: Account) -> None:
    response = await client.patch(
        f"{USERS}/me", content=b"full_name=x", headers={**user.headers, "content-type": "text/plain"}
    )
    assert_problem(response, 422, "invalid_input")


@pytest.mark.parametrize("field", ["role", "is_active"])
async def test_update_refuses_an_explicit_null(
    client: httpx.AsyncClient, admin: Account, user: Account, field: str
) -> None:
    response = await client.patch(f"{API}/users/{user['id']}", json={field: None}, headers=admin.headers)
    assert_problem(response, 422, "invalid_input")
    unchanged = (await client.get(f"{API}/users/{user['id']}", headers=admin.headers)).json()
    assert unchanged["role"] == "user"
    assert unchanged["is_active"] is True
