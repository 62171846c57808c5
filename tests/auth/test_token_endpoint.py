"""POST /api/v1/auth/token as the OAuth 2.0 token endpoint (password grant): RFC 6749 5.2 errors as members
of problem documents, the same answer for every wrong credential, throttling, and what the spec says."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tests.fixtures.app import Account, app_client, make_account
from tests.fixtures.helpers import (
    API,
    PASSWORD,
    assert_problem,
    assert_throttled,
    make_settings,
    unique_email,
)
from userapi.core.config import Settings

TOKEN = f"{API}/auth/token"


def grant(username: str, password: str = PASSWORD, **extra: str) -> dict[str, str]:
    return {"grant_type": "password", "username": username, "password": password, **extra}


def assert_oauth_error(response: httpx.Response, error: str) -> dict[str, Any]:
    """A 400 problem document that is also an RFC 6749 5.2 error response."""
    body = assert_problem(response, 400, error)
    assert body["error"] == error
    assert body["error_description"] == body["detail"]
    assert "www-authenticate" not in response.headers  # no client authentication is involved
    return body


async def test_the_password_grant_issues_tokens(client: httpx.AsyncClient, user: Account) -> None:
    response = await client.post(TOKEN, data=grant(user["email"], scope="ignored", client_id="swagger"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] > 0
    assert response.headers["cache-control"] == "no-store"
    me = await client.get(f"{API}/users/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200


async def test_every_wrong_credential_is_the_same_invalid_grant(
    client: httpx.AsyncClient, db_conn: AsyncConnection, user: Account
) -> None:
    inactive = await make_account(client)
    await db_conn.execute(text("UPDATE users SET is_active = false WHERE id = :id"), {"id": inactive["id"]})
    answers = [
        await client.post(TOKEN, data=grant(user["email"], "wrong password")),
        await client.post(TOKEN, data=grant(unique_email("nobody"))),
        await client.post(TOKEN, data=grant(inactive["email"])),
        await client.post(TOKEN, data=grant("not an address at all")),
        await client.post(TOKEN, data=grant(user["email"].upper(), PASSWORD + " ")),
    ]
    for response in answers:
        assert_oauth_error(response, "invalid_grant")
    assert len({response.content for response in answers}) == 1
    # The JSON login keeps its 401 for the same mistake.
    login = await client.post(
        f"{API}/auth/login", json={"email": user["email"], "password": "wrong password"}
    )
    assert_problem(login, 401, "invalid_credentials")


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({}, "invalid_request"),
        ({"username": "a@example.com", "password": PASSWORD}, "invalid_request"),  # grant_type is required
        ({"grant_type": "", "username": "a@example.com", "password": PASSWORD}, "invalid_request"),
        ({"grant_type": "password", "password": PASSWORD}, "invalid_request"),
        ({"grant_type": "password", "username": "a@example.com"}, "invalid_request"),
        ({"grant_type": "password", "username": "", "password": PASSWORD}, "invalid_request"),
        ({"grant_type": "password", "username": "a@example.com", "password": ""}, "invalid_request"),
        (
            {"grant_type": "password", "username": "a\x00b@example.com", "password": PASSWORD},
            "invalid_request",
        ),
        ({"grant_type": "password", "username": "a" * 321, "password": PASSWORD}, "invalid_request"),
        ({"grant_type": "password", "username": "a@example.com", "password": "p" * 1025}, "invalid_request"),
        ({"grant_type": "client_credentials"}, "unsupported_grant_type"),
        ({"grant_type": "authorization_code", "code": "x"}, "unsupported_grant_type"),
        ({"grant_type": "refresh_token", "refresh_token": "x"}, "unsupported_grant_type"),
        (
            {"grant_type": "PASSWORD", "username": "a@example.com", "password": PASSWORD},
            "unsupported_grant_type",
        ),
        ({"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer"}, "unsupported_grant_type"),
    ],
)
async def test_malformed_requests_are_rfc_6749_errors(
    client: httpx.AsyncClient, form: dict[str, str], error: str
) -> None:
    assert_oauth_error(await client.post(TOKEN, data=form), error)


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {"json": grant("a@example.com")},  # JSON, not a form
        {"files": {"username": ("u.txt", b"a@example.com")}, "data": {"grant_type": "password"}},  # multipart
        {
            "content": b"grant_type=password&username=a%40example.com&password=x&password=y",
            "headers": {"content-type": "application/x-www-form-urlencoded"},
        },  # a repeated parameter
        {"content": b"\xff\xfe\x00", "headers": {"content-type": "application/x-www-form-urlencoded"}},
        {"content": b"", "headers": {"content-type": "text/plain"}},
    ],
    ids=["json", "multipart", "repeated", "binary", "text"],
)
async def test_requests_that_are_not_one_password_grant_form_are_invalid_request(
    client: httpx.AsyncClient, request_kwargs: dict[str, Any]
) -> None:
    assert_oauth_error(await client.post(TOKEN, **request_kwargs), "invalid_request")


async def test_throttling_stays_429(
    settings: Settings, engine: AsyncEngine, db_conn: AsyncConnection
) -> None:
    limited = make_settings(settings.plain_database_url or "", rate_limit_login_account="2/minute")
    async with app_client(limited, engine, db_conn) as client:
        account = await make_account(client)  # one login: the first of two attempts
        assert_oauth_error(await client.post(TOKEN, data=grant(account["email"], "wrong")), "invalid_grant")
        assert_throttled(await client.post(TOKEN, data=grant(account["email"])))


def test_the_spec_advertises_the_token_endpoint_and_its_errors(app: FastAPI) -> None:
    spec = app.openapi()
    flows = spec["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]
    assert flows["password"]["tokenUrl"] == TOKEN
    operation = spec["paths"][TOKEN]["post"]
    assert set(operation["requestBody"]["content"]) == {"application/x-www-form-urlencoded"}
    form = operation["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    assert set(form["required"]) == {"grant_type", "username", "password"}
    assert {"200", "400", "429"} <= set(operation["responses"])
    assert "422" not in operation["responses"]  # malformed requests are 400 invalid_request here
    assert "invalid_grant" in operation["responses"]["400"]["description"]
    problem = spec["components"]["schemas"]["Problem"]["properties"]
    assert {"error", "error_description"} <= set(problem)
