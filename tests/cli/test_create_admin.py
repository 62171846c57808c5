"""`userapi create-admin`: creates or promotes, reads the password from a pipe, idempotent, one-line errors.

The command commits for real: these tests use `live_client`, whose teardown empties the tables.
The CLI runs as a subprocess (about 2 s of imports each), so independent runs go in parallel.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.helpers import (
    API,
    PASSWORD,
    assert_one_line_error,
    bearer,
    login,
    register,
    run_cli,
    server_env,
)
from userapi.core.security import verify_password_sync


async def cli(*args: str, env: dict[str, str], input: str | None = None) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run_cli, *args, env=env, input=input)


async def fetch(engine: AsyncEngine, email: str) -> Any:
    async with engine.connect() as conn:
        return (
            await conn.execute(
                text("SELECT id, role::text AS role, is_active, password_hash FROM users WHERE email = :e"),
                {"e": email},
            )
        ).one_or_none()


async def test_create_admin_creates_or_promotes_and_is_idempotent(
    database_url: str, live_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    env = server_env(database_url)
    tag = uuid.uuid4().hex[:8]
    new_email = f"boss-{tag}@example.com"
    existing = await register(live_client, f"staff-{tag}@example.com")
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE users SET is_active = false WHERE id = :id"), {"id": existing["id"]})

    # Creation reads the password from the pipe; the email is normalised. Promotion needs no password.
    created, promoted = await asyncio.gather(
        cli("create-admin", "--email", f"  Boss-{tag}@EXAMPLE.com ", env=env, input=PASSWORD + "\n"),
        cli("create-admin", "--email", existing["email"].upper(), env=env, input=""),
    )

    assert (created.returncode, created.stdout.strip()) == (0, f"admin {new_email} created"), created
    assert (promoted.returncode, promoted.stdout.strip()) == (0, f"{existing['email']} promoted to admin"), (
        promoted
    )
    boss = await fetch(engine, new_email)
    assert (boss.role, boss.is_active) == ("admin", True)
    assert verify_password_sync(PASSWORD, boss.password_hash)
    staff = await fetch(engine, existing["email"])
    assert (staff.role, staff.is_active) == ("admin", True)

    # Both can sign in (the promoted one with its own, unchanged password) and act as admins.
    for email in (new_email, existing["email"]):
        tokens = await login(live_client, email)
        assert (
            await live_client.get(f"{API}/users", headers=bearer(tokens["access_token"]))
        ).status_code == 200

    # Running again changes nothing and succeeds; a different piped password is not applied.
    again = await cli("create-admin", "--email", new_email, env=env, input="another password entirely\n")
    assert (again.returncode, again.stdout.strip()) == (0, f"{new_email} is already an admin"), again
    assert (await fetch(engine, new_email)).password_hash == boss.password_hash
    async with engine.connect() as conn:
        count = await conn.scalar(text("SELECT count(*) FROM users WHERE email LIKE :p"), {"p": f"%-{tag}@%"})
    assert count == 2


async def test_create_admin_errors_are_one_line(
    database_url: str, live_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    env = server_env(database_url)
    tag = uuid.uuid4().hex[:8]
    unreachable = server_env("postgresql://userapi:secret@127.0.0.1:1/userapi")

    bad_email, weak, no_db = await asyncio.gather(
        cli("create-admin", "--email", "not-an-email", env=env, input=PASSWORD + "\n"),
        cli("create-admin", "--email", f"weak-{tag}@example.com", env=env, input="password1\n"),
        cli("create-admin", "--email", f"nodb-{tag}@example.com", env=unreachable, input=PASSWORD + "\n"),
    )

    assert_one_line_error(bad_email, "invalid email: ", "@-sign")
    assert "common" in assert_one_line_error(weak, "invalid password: ")
    assert_one_line_error(no_db, "database")
    assert "secret" not in no_db.stderr  # the URL's password is not printed
    assert await fetch(engine, f"weak-{tag}@example.com") is None


async def test_create_admin_is_audited_with_the_cli_as_actor(
    database_url: str, live_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    # The same service path as POST /api/v1/users (and PATCH for a promotion): the trail says so.
    env = server_env(database_url)
    tag = uuid.uuid4().hex[:8]
    existing = await register(live_client, f"clerk-{tag}@example.com")
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE users SET is_active = false WHERE id = :id"), {"id": existing["id"]})
    created, promoted = await asyncio.gather(
        cli("create-admin", "--email", f"chief-{tag}@example.com", env=env, input=PASSWORD + "\n"),
        cli("create-admin", "--email", existing["email"], env=env, input=""),
    )
    assert created.returncode == 0, created
    assert promoted.returncode == 0, promoted
    chief = await fetch(engine, f"chief-{tag}@example.com")

    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT type, user_id, actor_id, ip, detail FROM auth_events"
                    " WHERE user_id IN (:a, :b) AND type <> 'signup' ORDER BY id"
                ),
                {"a": chief.id, "b": uuid.UUID(existing["id"])},
            )
        ).all()
    events = {(row.type, str(row.user_id)): row for row in rows}
    assert set(events) == {
        ("user_created", str(chief.id)),
        ("role_changed", existing["id"]),
        ("user_reactivated", existing["id"]),
    }
    for row in rows:
        assert (row.actor_id, row.ip, row.detail["actor"]) == (None, None, "cli")
    assert events["user_created", str(chief.id)].detail == {"actor": "cli", "role": "admin"}
    assert events["role_changed", existing["id"]].detail == {"actor": "cli", "old": "user", "new": "admin"}


async def test_create_admin_uses_the_canonical_email_and_the_password_policy(
    database_url: str, live_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    env = server_env(database_url)
    tag = uuid.uuid4().hex[:8]
    canonical = f"josé-{tag}@bücher.example.com"
    signed_up = await register(live_client, f"zoë-{tag}@example.com")

    created, promoted, personal = await asyncio.gather(
        # A decomposed accent and an A-label domain: stored in the one canonical form.
        cli(
            "create-admin",
            "--email",
            f"JOSE\u0301-{tag}@XN--BCHER-KVA.EXAMPLE.COM",
            env=env,
            input=PASSWORD + "\n",
        ),
        # Any other spelling of an existing address finds it (no second account).
        cli("create-admin", "--email", f"ZOE\u0308-{tag}@EXAMPLE.COM", env=env, input=""),
        # A password built on the address is refused in one line, like at sign-up.
        cli("create-admin", "--email", f"grace-{tag}@example.com", env=env, input=f"Grace-{tag}-rocks\n"),
    )

    assert (created.returncode, created.stdout.strip()) == (0, f"admin {canonical} created"), created
    assert (promoted.returncode, promoted.stdout.strip()) == (0, f"{signed_up['email']} promoted to admin")
    assert "must not contain" in assert_one_line_error(personal, "password")
    assert await fetch(engine, f"grace-{tag}@example.com") is None
    assert (await fetch(engine, canonical)).role == "admin"
    # The admin signs in with yet another spelling.
    tokens = await login(live_client, f"jose\u0301-{tag}@bu\u0308cher.example.com")
    assert (await live_client.get(f"{API}/users", headers=bearer(tokens["access_token"]))).status_code == 200
    again = await cli("create-admin", "--email", canonical, env=env, input="")
    assert (again.returncode, again.stdout.strip()) == (0, f"{canonical} is already an admin"), again
