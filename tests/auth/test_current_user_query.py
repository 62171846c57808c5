"""The per-request user query selects every column of users, from the model: none can be forgotten."""

from __future__ import annotations

import re
import uuid

import httpx
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.fixtures.app import Account, bind_to_connection
from userapi.auth.repository import USER_FOR_REQUEST, CurrentUserRepository
from userapi.db.reads import ReadPool
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
    loaded, live, key_live = found
    assert live is True
    assert key_live is True
    # No attribute left unloaded: touching one later would be a lazy load outside any session.
    assert sa_inspect(loaded).unloaded == set()
    assert loaded.email == user["email"]
    assert loaded.role.value == user["role"]
