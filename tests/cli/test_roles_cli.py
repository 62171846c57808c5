"""`userapi roles list|show|create|grant|revoke|assign`: the roles service from the command line, with the
same rules, audit events (actor `cli`) and one-line errors; a change acts on the holders' next request.

The commands commit for real: these tests use `live_client`, whose teardown empties the tables (and
removes custom roles). Each command is a subprocess (about 2 s of imports), so independent runs go
in parallel.
"""

from __future__ import annotations

import asyncio
import subprocess

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.helpers import API, assert_one_line_error, bearer, login, register, run_cli, server_env


async def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run_cli, *args, env=env)


def ok(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result
    assert result.stderr.strip() == "", result.stderr
    return result.stdout.strip().splitlines()


async def test_create_grant_revoke_assign_list_show(
    database_url: str, live_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    env = server_env(database_url)
    agent = await register(live_client)
    headers = bearer((await login(live_client, agent["email"]))["access_token"])
    assert (await live_client.get(f"{API}/users", headers=headers)).status_code == 403

    assert ok(await cli("roles", "create", "support", "-d", "Help desk", "-p", "users:read", env=env)) == [
        "created support: users:read"
    ]
    granted, assigned = await asyncio.gather(
        cli("roles", "grant", "support", "users:update", "audit:read", env=env),
        cli("roles", "assign", agent["email"].upper(), "support", env=env),
    )
    assert ok(granted) == ["support: audit:read, users:read, users:update"]
    assert ok(assigned) == [f"{agent['email']}: user -> support"]
    # The same access token, on its next request.
    assert (await live_client.get(f"{API}/audit-events", headers=headers)).status_code == 200

    assert ok(await cli("roles", "revoke", "support", "audit:read", env=env)) == [
        "support: users:read, users:update"
    ]
    assert (await live_client.get(f"{API}/audit-events", headers=headers)).status_code == 403
    assert (await live_client.get(f"{API}/users", headers=headers)).status_code == 200

    listed, shown = await asyncio.gather(
        cli("roles", "list", env=env), cli("roles", "show", "support", env=env)
    )
    rows = {line.split()[0]: line.split()[1:] for line in ok(listed)[1:]}
    assert ok(listed)[0].split() == ["NAME", "USERS", "PERMISSIONS"]
    assert rows["support"] == ["1", "users:read", "users:update"]
    assert rows["admin*"][1:] == ["(all)"]
    assert rows["user*"][1:] == ["-"]
    shown_lines = ok(shown)
    assert shown_lines[:4] == [
        "name         support",
        "description  Help desk",
        "accounts     1",
        "permissions",
    ]
    assert "  [x] users:read" in "\n".join(shown_lines)
    assert "  [ ] users:delete" in "\n".join(shown_lines)

    async with engine.connect() as conn:
        events = (
            await conn.execute(
                text(
                    "SELECT type, actor_id, detail FROM auth_events "
                    "WHERE type IN ('role_created', 'role_updated', 'role_changed') ORDER BY id"
                )
            )
        ).all()
    assert [e.type for e in events if e.type != "role_changed"] == [
        "role_created",
        "role_updated",
        "role_updated",
    ]
    assert all(e.actor_id is None and e.detail["actor"] == "cli" for e in events)
    assert events[0].detail == {
        "actor": "cli",
        "role": "support",
        "after": {"description": "Help desk", "permissions": ["users:read"]},
    }
    assert {"old": "user", "new": "support", "actor": "cli"} in [e.detail for e in events]


async def test_refusals_are_one_line_errors(
    database_url: str, live_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    env = server_env(database_url)
    agent = await register(live_client)
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO roles (name, permissions) VALUES ('held', '{users:read}')"))
        await conn.execute(text("UPDATE users SET role = 'held' WHERE id = :id"), {"id": agent["id"]})
        # The only admin holds a custom role: taking roles:manage from it is refused.
        await conn.execute(text("UPDATE users SET role = 'user' WHERE role = 'admin'"))
        await conn.execute(
            text("INSERT INTO roles (name, permissions) VALUES ('ops', '{roles:manage,users:manage-roles}')")
        )
    boss = await register(live_client)
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE users SET role = 'ops' WHERE id = :id"), {"id": boss["id"]})

    # The refusals themselves are tested over HTTP; here: each kind reaches the operator as one line.
    results = await asyncio.gather(
        cli("roles", "create", "Bad Name", env=env),
        cli("roles", "grant", "admin", "users:read", env=env),
        cli("roles", "assign", "nobody@example.com", "held", env=env),
        cli("roles", "revoke", "ops", "roles:manage", env=env),
        cli("roles", "create", "long", "-d", "d" * 201, env=env),
    )
    expected = [
        ("invalid_role_name",),
        ("built_in_role", "admin"),
        ("no account", "nobody@example.com"),
        ("last_admin", "ops"),
        ("description", "200"),
    ]
    for result, words in zip(results, expected, strict=True):
        assert_one_line_error(result, *words)
    async with engine.connect() as conn:
        roles = dict((await conn.execute(text("SELECT name, permissions FROM roles ORDER BY name"))).all())
    assert roles == {
        "admin": [],
        "held": ["users:read"],
        "ops": ["roles:manage", "users:manage-roles"],
        "user": [],
    }
