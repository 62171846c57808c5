"""Test fixtures: a fresh PostgreSQL database per run, built by the real migrations; each test in a
rolled-back transaction; real HTTP through the ASGI app."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker

from tests.helpers import PASSWORD, bearer, login, make_settings, random_name, register, unique_email
from userapi.core.config import Settings, to_async_url
from userapi.db import migrate
from userapi.db.reads import bind_to_connection, bind_to_engine
from userapi.db.session import build_engine, build_sessionmaker
from userapi.main import create_app
from userapi.users.constants import Role
from userapi.users.models import User


def _server_url() -> str:
    """TEST_DATABASE_URL or DATABASE_URL when set, else the embedded cluster (started if needed)."""
    url = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if url:
        return url
    from userapi.db.embedded import EmbeddedPostgres, ensure_server_binaries

    cluster = EmbeddedPostgres(Path(os.environ.get("DATA_DIR", ".data")).resolve() / "postgres")
    if not cluster.status().running:
        ensure_server_binaries()
    return cluster.start()


def _with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
async def server_url() -> str:
    return await asyncio.to_thread(_server_url)


@pytest.fixture(scope="session")
async def database_url(server_url: str) -> AsyncIterator[str]:
    """A fresh database for this run, migrated to head with the real migrations."""
    name = random_name("userapi_test")
    admin = await asyncpg.connect(_asyncpg_dsn(_with_database(server_url, "postgres")))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = _with_database(server_url, name)
    # Alembic's env.py calls asyncio.run: keep it out of the test's event loop.
    await asyncio.to_thread(migrate.upgrade, to_async_url(url))
    yield url
    admin = await asyncpg.connect(_asyncpg_dsn(_with_database(server_url, "postgres")))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@asynccontextmanager
async def scratch_database(server_url: str, prefix: str = "userapi_scratch") -> AsyncIterator[str]:
    """An empty database of its own on the test server (plain postgresql:// URL), dropped afterwards."""
    name = random_name(prefix)
    maintenance = _asyncpg_dsn(_with_database(server_url, "postgres"))
    admin = await asyncpg.connect(maintenance)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield _with_database(server_url, name)
    finally:
        admin = await asyncpg.connect(maintenance)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
async def empty_database_url(server_url: str) -> AsyncIterator[str]:
    """A fresh, unmigrated database for tests that migrate (or must not)."""
    async with scratch_database(server_url) as url:
        yield url


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = build_engine(settings)
    yield engine
    await engine.dispose()


@pytest.fixture
async def db_conn(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """The test's connection inside an outer transaction that is rolled back afterwards."""
    async with engine.connect() as conn:
        transaction = await conn.begin()
        try:
            yield conn
        finally:
            await transaction.rollback()


def build_test_app(settings: Settings, engine: AsyncEngine, conn: AsyncConnection | None) -> FastAPI:
    """The real app; with `conn`, every request's session is a savepoint inside the test's transaction."""
    app = create_app(settings)
    app.state.engine = engine
    if conn is None:
        app.state.sessionmaker = build_sessionmaker(engine)
        bind_to_engine(app.state.reads, engine)
    else:
        bind_to_connection(app.state.reads, conn)
        app.state.sessionmaker = async_sessionmaker(
            bind=conn,
            expire_on_commit=False,
            autoflush=False,
            join_transaction_mode="create_savepoint",
        )
    return app


@pytest.fixture
def app(settings: Settings, engine: AsyncEngine, db_conn: AsyncConnection) -> FastAPI:
    return build_test_app(settings, engine, db_conn)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
async def live_app(settings: Settings, engine: AsyncEngine) -> AsyncIterator[FastAPI]:
    """The app with real commits (for concurrency); the tables are emptied afterwards."""
    yield build_test_app(settings, engine, None)
    async with engine.begin() as conn:
        await conn.execute(text("TRUNCATE users, refresh_tokens, auth_events CASCADE"))


@pytest.fixture
async def live_client(live_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=live_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


class Account(dict[str, Any]):
    """A registered user (the API's JSON) with its password and tokens."""

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self["tokens"]["access_token"])


async def make_account(
    client: httpx.AsyncClient, conn: AsyncConnection | None = None, role: Role = Role.user, **fields: Any
) -> Account:
    email = fields.pop("email", None) or unique_email(role.value)
    user = await register(client, email, **fields)
    if role is not Role.user:
        assert conn is not None
        await conn.execute(update(User).where(User.id == user["id"]).values(role=role))
        user["role"] = role.value
    account = Account(user)
    account["password"] = fields.get("password", PASSWORD)
    account["tokens"] = await login(client, email, account["password"])
    return account


@pytest.fixture
async def user(client: httpx.AsyncClient) -> Account:
    return await make_account(client)


@pytest.fixture
async def admin(client: httpx.AsyncClient, db_conn: AsyncConnection) -> Account:
    return await make_account(client, db_conn, Role.admin)
