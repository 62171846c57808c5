"""The per-request user query selects every column of users, from the model: none can be forgotten; and
the role's permissions come with it, as stored now."""

from __future__ import annotations

import re
import uuid

import httpx
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.fixtures.app import Account, bind_to_connection, create_role, make_account
from userapi.auth.repository import USER_FOR_REQUEST, CurrentUserRepository
from userapi.db.reads import ReadPool
from userapi.roles.constants import Permission
from userapi.users.models import User


def _selected_names() -> set[str]:
    select_list = USER_FOR_REQUEST.split("FROM users u")[0]
    return set(re.findall(r"\bu\.(\w+)", select_list))


async def test_every_column_of_the_users_table_is_selected(db_conn: AsyncConnection) -> None:
    # Against the migrated database, not the model: a column a migration adds to users must be
    # in the model (alembic check) and therefore here.
    rows = await db_conn.execute(
        text("SELECT column_name FROM information_schema.columns WHERE table_name = 'users'")
    )
    in_database = {row[0] for row in rows}
    assert in_database
    assert _selected_names() == in_database


async def test_a_column_added_to_the_model_joins_the_query() -> None:
    # The list is built from the mapper; a model column not in it would fail the test above too.
    assert _selected_names() == {column.name for column in User.__table__.columns}


async def test_the_user_for_a_request_is_fully_loaded(
    user: Account, client: httpx.AsyncClient, db_conn: AsyncConnection
) -> None:
    reads = ReadPool()
    bind_to_connection(reads, db_conn)
    found = await CurrentUserRepository(reads).user_for_request(uuid.UUID(user["id"]), None)
    assert found is not None
    assert found.session_live is True
    assert found.key_live is True
    loaded = found.user
    # No attribute left unloaded: touching one later would be a lazy load outside any session.
    assert sa_inspect(loaded).unloaded == set()
    # As if loaded by a session: detached with its identity, nothing pending, so a route that
    # attaches it and changes a column writes an UPDATE of that column only.
    state = sa_inspect(loaded)
    assert state.detached
    assert state.identity == (uuid.UUID(user["id"]),)
    assert not state.modified
    assert all(not attribute.history.has_changes() for attribute in state.attrs)
    assert loaded.email == user["email"]
    assert loaded.role == user["role"] == "user"
    assert found.permissions == frozenset()


async def test_the_request_reads_the_role_s_permissions_as_stored_now(
    client: httpx.AsyncClient, db_conn: AsyncConnection
) -> None:
    role = await create_role(db_conn, "users:read", "not-in-the-catalogue")
    account = await make_account(client, db_conn, role)
    reads = ReadPool()
    bind_to_connection(reads, db_conn)
    repository = CurrentUserRepository(reads)

    found = await repository.user_for_request(uuid.UUID(account["id"]), None)
    # A stored name the catalogue no longer has grants nothing.
    assert found is not None
    assert found.permissions == {"users:read"}
    await db_conn.execute(
        text("UPDATE roles SET permissions = '{users:read,users:update}' WHERE name = :n"), {"n": role}
    )
    found = await repository.user_for_request(uuid.UUID(account["id"]), None)
    assert found is not None
    assert found.permissions == {"users:read", "users:update"}
    await db_conn.execute(text("UPDATE users SET role = 'admin' WHERE id = :id"), {"id": account["id"]})
    found = await repository.user_for_request(uuid.UUID(account["id"]), None)
    assert found is not None
    assert found.permissions == {p.value for p in Permission}
