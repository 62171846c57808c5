"""Every error is an RFC 9457 problem document; a failed commit never becomes a 2xx."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.app import build_test_app
from tests.fixtures.helpers import assert_problem
from userapi.core.config import Settings
from userapi.db.session import SessionDep

PROBLEM_KEYS = {"type", "title", "status", "detail", "code"}


async def test_unknown_path_is_a_404_problem(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/no/such/path"), 404)


async def test_wrong_method_is_a_405_problem(client: httpx.AsyncClient) -> None:
    response = await client.delete("/health/live")
    assert_problem(response, 405)
    assert "GET" in response.headers["allow"]


async def test_malformed_json_is_a_422_problem_with_errors(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/register", content=b'{"email": ', headers={"content-type": "application/json"}
    )
    body = assert_problem(response, 422)
    assert isinstance(body["errors"], list)
    assert body["errors"]


async def test_validation_errors_never_echo_the_input(client: httpx.AsyncClient) -> None:
    secret = "hunter2-but-short"
    response = await client.post("/api/v1/auth/register", json={"email": "nope", "password": secret * 100})
    body = assert_problem(response, 422)
    assert secret not in response.text
    assert {e["loc"][-1] for e in body["errors"]} == {"email", "password"}  # type: ignore[union-attr,index]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/auth/password/forgot", {"email": "a" * 400 + "@example.com"}),
        ("/api/v1/auth/register", {"email": "b" * 400 + "@example.com", "password": "p" * 10}),
        ("/api/v1/auth/register", {"email": "c@example.com", "password": "p" * 10, "full_name": "n" * 300}),
    ],
)
async def test_text_too_long_is_counted_in_characters(
    client: httpx.AsyncClient, path: str, body: dict[str, str]
) -> None:
    """Pydantic words a length bound placed beside a validator in "items"; text is characters."""
    response = await client.post(path, json=body)
    assert response.status_code == 422, response.text
    messages = [error["msg"] for error in response.json()["errors"] if error["type"] == "too_long"]
    assert messages, response.text
    assert all("characters" in m and "items" not in m for m in messages), messages


async def test_nul_character_is_refused_not_a_500(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/register",
        json={"email": "nul@example.com", "password": "long enough pass", "full_name": "a\u0000b"},
    )
    assert_problem(response, 422)


@pytest.fixture
async def probe_app(settings: Settings, engine: AsyncEngine) -> AsyncIterator[FastAPI]:
    """The real app plus two test routes: one that crashes, one whose commit fails."""
    async with engine.begin() as conn:
        # A deferred constraint is checked at COMMIT, after the route returned.
        await conn.execute(
            text(
                "CREATE TABLE commit_probe (id int PRIMARY KEY, ref int REFERENCES commit_probe (id) "
                "DEFERRABLE INITIALLY DEFERRED)"
            )
        )
    app = build_test_app(settings, engine, None)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internal detail")

    @app.post("/commit-fails")
    async def commit_fails(session: SessionDep) -> dict[str, str]:
        await session.execute(text("INSERT INTO commit_probe VALUES (1, 999)"))
        return {"status": "ok"}

    yield app
    async with engine.begin() as conn:
        await conn.execute(text("DROP TABLE commit_probe"))


async def test_unexpected_error_is_a_500_problem_without_details(probe_app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=probe_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/boom")
    assert_problem(response, 500)
    assert "secret internal detail" not in response.text


async def test_failed_commit_is_never_a_2xx(probe_app: FastAPI, engine: AsyncEngine) -> None:
    transport = httpx.ASGITransport(app=probe_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.post("/commit-fails")
    assert response.status_code >= 500
    assert response.headers["content-type"].startswith("application/problem+json")
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM commit_probe"))).scalar() == 0
