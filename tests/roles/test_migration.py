"""Migration 0004 keeps the data both ways: users keep their role on upgrade, on downgrade custom roles fall
back to `user`, and upgrading again works; the table's own rules hold in the database too."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from userapi.core.config import to_async_url
from userapi.db import migrate


async def roles_of(conn: asyncpg.Connection) -> dict[str, str]:
    return {r["email"]: r["role"] for r in await conn.fetch("SELECT email, role::text AS role FROM users")}


async def test_upgrade_downgrade_upgrade_keeps_every_users_role(empty_database_url: str) -> None:
    url = to_async_url(empty_database_url)
    await asyncio.to_thread(migrate.upgrade, url, "0003")
    conn = await asyncpg.connect(empty_database_url)
    try:
        await conn.execute(
            "INSERT INTO users (email, password_hash, role, is_active) VALUES "
            "('u1@example.com', 'x', 'user', true), ('a1@example.com', 'x', 'admin', true), "
            "('a2@example.com', 'x', 'admin', false), ('u2@example.com', 'x', DEFAULT, true)"
        )
        before = await roles_of(conn)
        assert before == {
            "u1@example.com": "user",
            "a1@example.com": "admin",
            "a2@example.com": "admin",
            "u2@example.com": "user",
        }

        await asyncio.to_thread(migrate.upgrade, url, "0004")
        assert await roles_of(conn) == before
        roles = {
            r["name"]: tuple(r)[1:]
            for r in await conn.fetch(
                "SELECT name, built_in, all_permissions, permissions FROM roles ORDER BY name"
            )
        }
        assert roles == {"admin": (True, True, []), "user": (True, False, [])}
        assert await conn.fetchval("SELECT to_regtype('user_role')") is None
        # New rows still default to `user`; a custom role and its holder appear.
        await conn.execute("INSERT INTO users (email, password_hash) VALUES ('u3@example.com', 'x')")
        await conn.execute("INSERT INTO roles (name, permissions) VALUES ('support', '{users:read}')")
        await conn.execute(
            "INSERT INTO users (email, password_hash, role) VALUES ('s1@example.com', 'x', 'support')"
        )
        with_custom = await roles_of(conn)
        assert with_custom == {**before, "u3@example.com": "user", "s1@example.com": "support"}

        await asyncio.to_thread(migrate.downgrade, url, "0003")
        # The enum is back; the custom role's holder falls back to `user`, everyone else keeps theirs.
        assert await roles_of(conn) == {**with_custom, "s1@example.com": "user"}
        assert await conn.fetchval("SELECT to_regclass('roles')") is None
        assert (
            await conn.fetchval(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = 'users'::regclass AND attname = 'role'"
            )
            == "user_role"
        )
        assert (
            await conn.fetchval(
                "SELECT column_default FROM information_schema.columns "
                "WHERE table_name = 'users' AND column_name = 'role'"
            )
            == "'user'::user_role"
        )

        await asyncio.to_thread(migrate.upgrade, url, "head")
        assert await roles_of(conn) == {**with_custom, "s1@example.com": "user"}
        assert await conn.fetchval("SELECT count(*) FROM roles") == 2
    finally:
        await conn.close()


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO roles (name) VALUES ('Bad')",
        "INSERT INTO roles (name) VALUES ('x')",
        "INSERT INTO roles (name) VALUES (E'ok-name\\n')",
        "INSERT INTO roles (name, all_permissions) VALUES ('sneaky', true)",
        "INSERT INTO roles (name, permissions) VALUES ('holes', ARRAY['users:read', NULL])",
        "UPDATE users SET role = 'no-such-role'",
        "DELETE FROM roles WHERE name = 'user'",
    ],
)
async def test_the_database_refuses_what_the_rules_forbid(db_conn: AsyncConnection, sql: str) -> None:
    await db_conn.execute(
        text("INSERT INTO users (email, password_hash) VALUES (:e, 'x')"),
        {"e": f"{uuid.uuid4().hex}@example.com"},
    )
    savepoint = await db_conn.begin_nested()
    with pytest.raises(IntegrityError):
        await db_conn.execute(text(sql))
    await savepoint.rollback()
