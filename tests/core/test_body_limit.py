"""Request bodies over MAX_BODY_BYTES get a 413 problem document before anything parses them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.fixtures.helpers import API, PASSWORD, unique_email
from userapi.core.config import Settings

REGISTER = f"{API}/auth/register"
CHUNK = 64 * 1024


def padded_registration(email: str, size: int) -> bytes:
    """A valid sign-up body padded with JSON whitespace to exactly `size` bytes: parsed, it would register."""
    body = orjson.dumps({"email": email, "password": PASSWORD})
    assert len(body) < size
    return body + b" " * (size - len(body))


async def chunked(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), CHUNK):
        yield body[start : start + CHUNK]


async def registered(conn: AsyncConnection, email: str) -> bool:
    return bool(await conn.scalar(text("SELECT count(*) FROM users WHERE email = :e"), {"e": email}))


def assert_413(response: httpx.Response, limit: int) -> None:
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 413
    assert body["code"] == "payload_too_large"
    assert str(limit) in body["detail"]


def test_default_limit_is_one_mebibyte() -> None:
    assert Settings(_env_file=None).max_body_bytes == 1024 * 1024  # type: ignore[call-arg]


async def test_content_length_over_the_limit_is_413_and_not_parsed(
    client: httpx.AsyncClient, settings: Settings, db_conn: AsyncConnection
) -> None:
    limit = settings.max_body_bytes
    email = unique_email("big")
    body = padded_registration(email, limit + 1)
    response = await client.post(REGISTER, content=body, headers={"Content-Type": "application/json"})
    assert_413(response, limit)
    assert not await registered(db_conn, email)


async def test_chunked_body_over_the_limit_is_413_and_not_parsed(
    client: httpx.AsyncClient, settings: Settings, db_conn: AsyncConnection
) -> None:
    limit = settings.max_body_bytes
    email = unique_email("stream")
    body = padded_registration(email, limit + CHUNK)
    request = client.build_request(
        "POST", REGISTER, content=chunked(body), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in request.headers
    assert request.headers["transfer-encoding"] == "chunked"
    response = await client.send(request)
    assert_413(response, limit)
    assert not await registered(db_conn, email)


@pytest.mark.parametrize("shortfall", [0, 1])
async def test_body_at_or_just_under_the_limit_is_accepted(
    client: httpx.AsyncClient, settings: Settings, db_conn: AsyncConnection, shortfall: int
) -> None:
    email = unique_email("fits")
    body = padded_registration(email, settings.max_body_bytes - shortfall)
    response = await client.post(REGISTER, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 201, response.text
    assert await registered(db_conn, email)


async def test_chunked_body_just_under_the_limit_is_accepted(
    client: httpx.AsyncClient, settings: Settings, db_conn: AsyncConnection
) -> None:
    email = unique_email("fits-stream")
    body = padded_registration(email, settings.max_body_bytes - 1)
    response = await client.post(
        REGISTER, content=chunked(body), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 201, response.text
    assert await registered(db_conn, email)


async def test_large_invalid_body_under_the_limit_is_a_422_not_a_413(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    body = orjson.dumps({"email": "x" * (settings.max_body_bytes - 100), "password": PASSWORD})
    assert len(body) < settings.max_body_bytes
    response = await client.post(REGISTER, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422


async def test_the_limit_applies_to_signed_in_routes_too(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    response = await client.patch(
        f"{API}/users/me",
        content=b" " * (settings.max_body_bytes + 1),
        headers={"Content-Type": "application/json", "Authorization": "Bearer whatever"},
    )
    assert_413(response, settings.max_body_bytes)
