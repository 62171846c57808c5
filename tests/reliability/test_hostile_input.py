"""Hostile input, each case with its exact expected status: never a 500, and no data changed.

Every case runs through the real app against the real database; after each batch the users,
refresh_tokens and auth_events tables are compared with a snapshot taken before it (a hostile
request may add an audit row for a failed login, which is the one write it is allowed).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.fixtures.app import Account
from tests.fixtures.helpers import API, PASSWORD, assert_problem

INJECTIONS = [
    "' OR '1'='1",
    "'; DROP TABLE users; --",
    '" OR ""="',
    "admin'--",
    "1; SELECT pg_sleep(5)",
    "%' OR email LIKE '%",
    "\\'; TRUNCATE refresh_tokens; --",
    "$1",
    "%s%s%s%s",
    "{{7*7}}",
]
JSON_ENDPOINTS = [
    ("POST", f"{API}/auth/register"),
    ("POST", f"{API}/auth/login"),
    ("POST", f"{API}/auth/refresh"),
    ("POST", f"{API}/auth/logout"),
    ("PATCH", f"{API}/users/me"),
    ("POST", f"{API}/users/me/password"),
    ("POST", f"{API}/users"),
]
MALFORMED_JSON = [
    b"{",
    b'{"email":}',
    b'{"email": "a@example.com",}',
    b"[]",
    b'"text"',
    b"null",
    b"123",
    b"{'a': 1}",
]


async def snapshot(conn: AsyncConnection) -> tuple[Any, ...]:
    users = (
        await conn.execute(
            text(
                "SELECT id, email, password_hash, full_name, role, is_active, "
                "token_version FROM users ORDER BY id"
            )
        )
    ).all()
    tokens = (
        await conn.execute(text("SELECT id, revoked_at, rotated_at FROM refresh_tokens ORDER BY id"))
    ).all()
    events = (
        await conn.execute(
            text("SELECT type FROM auth_events WHERE type NOT IN ('login_failed') ORDER BY id")
        )
    ).all()
    return tuple(users), tuple(tokens), tuple(events)


@pytest.fixture
async def accounts(client: httpx.AsyncClient, user: Account, admin: Account) -> dict[str, Account]:
    return {"user": user, "admin": admin}


def _headers(accounts: dict[str, Account], path: str) -> dict[str, str]:
    return accounts["admin"].headers if path == f"{API}/users" else accounts["user"].headers


@pytest.mark.parametrize(("method", "path"), JSON_ENDPOINTS)
async def test_malformed_json_is_422(
    client: httpx.AsyncClient, db_conn: AsyncConnection, accounts: dict[str, Account], method: str, path: str
) -> None:
    before = await snapshot(db_conn)
    for body in MALFORMED_JSON:
        response = await client.request(
            method,
            path,
            content=body,
            headers={"content-type": "application/json", **_headers(accounts, path)},
        )
        assert_problem(response, 422, "invalid_input")
    assert await snapshot(db_conn) == before


@pytest.mark.parametrize(("method", "path"), JSON_ENDPOINTS)
@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/xml", "multipart/form-data"],
)
async def test_wrong_content_type_is_422(
    client: httpx.AsyncClient,
    db_conn: AsyncConnection,
    accounts: dict[str, Account],
    method: str,
    path: str,
    content_type: str,
) -> None:
    before = await snapshot(db_conn)
    body = b'{"email": "ct@example.com", "password": "long enough passphrase", "full_name": "x"}'
    response = await client.request(
        method, path, content=body, headers={"content-type": content_type, **_headers(accounts, path)}
    )
    assert_problem(response, 422, "invalid_input")
    assert await snapshot(db_conn) == before


async def test_invalid_utf8_and_deep_nesting_are_400(
    client: httpx.AsyncClient, db_conn: AsyncConnection
) -> None:
    before = await snapshot(db_conn)
    bodies = [
        b'{"email": "\xff\xfe@example.com", "password": "long enough passphrase"}',
        b'{"email": ' + b"[" * 100_000 + b"]" * 100_000 + b', "password": "x"}',
    ]
    for body in bodies:
        response = await client.post(
            f"{API}/auth/register", content=body, headers={"content-type": "application/json"}
        )
        assert_problem(response, 400, "bad_request")
    assert await snapshot(db_conn) == before


async def test_moderately_nested_json_is_422(client: httpx.AsyncClient) -> None:
    body = b'{"email": ' + b'{"a": ' * 500 + b"1" + b"}" * 500 + b', "password": "long enough passphrase"}'
    response = await client.post(
        f"{API}/auth/register", content=body, headers={"content-type": "application/json"}
    )
    assert_problem(response, 422, "invalid_input")


async def test_huge_body_is_413(client: httpx.AsyncClient, db_conn: AsyncConnection) -> None:
    before = await snapshot(db_conn)
    body = b'{"email": "huge@example.com", "password": "' + b"p" * (2 * 1024 * 1024) + b'"}'
    response = await client.post(
        f"{API}/auth/register", content=body, headers={"content-type": "application/json"}
    )
    assert_problem(response, 413, "payload_too_large")
    assert await snapshot(db_conn) == before


OVERLONG = "x" * 5000
REGISTER_FIELDS = {"email": "long@example.com", "password": "long enough passphrase", "full_name": "Long"}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        # Overlong strings in every field.
        ("POST", f"{API}/auth/register", {**REGISTER_FIELDS, "email": OVERLONG + "@example.com"}),
        ("POST", f"{API}/auth/register", {**REGISTER_FIELDS, "password": OVERLONG}),
        ("POST", f"{API}/auth/register", {**REGISTER_FIELDS, "full_name": OVERLONG}),
        ("POST", f"{API}/auth/login", {"email": OVERLONG, "password": "whatever"}),
        ("POST", f"{API}/auth/login", {"email": "a@example.com", "password": OVERLONG}),
        ("POST", f"{API}/auth/refresh", {"refresh_token": OVERLONG}),
        ("POST", f"{API}/auth/logout", {"refresh_token": OVERLONG}),
        ("PATCH", f"{API}/users/me", {"full_name": OVERLONG}),
        (
            "POST",
            f"{API}/users/me/password",
            {"current_password": OVERLONG, "new_password": "another passphrase"},
        ),
        ("POST", f"{API}/users/me/password", {"current_password": PASSWORD, "new_password": OVERLONG}),
        ("POST", f"{API}/users", {**REGISTER_FIELDS, "full_name": OVERLONG}),
        # NUL characters and lone surrogates (text PostgreSQL cannot store).
        ("POST", f"{API}/auth/register", {**REGISTER_FIELDS, "email": "nul\x00@example.com"}),
        ("POST", f"{API}/auth/register", {**REGISTER_FIELDS, "full_name": "a\x00b"}),
        ("POST", f"{API}/auth/register", {**REGISTER_FIELDS, "password": "long enough \ud800 pass"}),
        ("POST", f"{API}/auth/login", {"email": "a\x00b@example.com", "password": "whatever it is"}),
        ("POST", f"{API}/auth/login", {"email": "\udfff@example.com", "password": "whatever it is"}),
        ("PATCH", f"{API}/users/me", {"full_name": "\x00"}),
        ("PATCH", f"{API}/users/me", {"full_name": "\ud83d"}),
        ("POST", f"{API}/users", {**REGISTER_FIELDS, "full_name": "nul \x00"}),
    ],
)
async def test_overlong_nul_and_lone_surrogate_strings_are_422(
    client: httpx.AsyncClient,
    db_conn: AsyncConnection,
    accounts: dict[str, Account],
    method: str,
    path: str,
    body: dict[str, str],
) -> None:
    before = await snapshot(db_conn)
    # json.dumps escapes a lone surrogate as \\udXXX (valid JSON text, invalid Unicode); httpx's
    # json= would refuse to encode it.
    content = json.dumps(body).encode()
    headers = {"content-type": "application/json", **_headers(accounts, path)}
    response = await client.request(method, path, content=content, headers=headers)
    assert_problem(response, 422, "invalid_input")
    assert await snapshot(db_conn) == before


async def test_nul_in_the_token_form_is_invalid_request(client: httpx.AsyncClient) -> None:
    form = {"grant_type": "password", "username": "a\x00b", "password": "whatever"}
    response = await client.post(f"{API}/auth/token", data=form)
    assert assert_problem(response, 400, "invalid_request")["error"] == "invalid_request"


@pytest.mark.parametrize("attack", INJECTIONS)
async def test_sql_injection_strings_are_plain_data(
    client: httpx.AsyncClient, db_conn: AsyncConnection, accounts: dict[str, Account], attack: str
) -> None:
    user, admin = accounts["user"], accounts["admin"]
    before = await snapshot(db_conn)
    # As an email it is not an address: refused; as a login it matches nobody.
    assert_problem(
        await client.post(f"{API}/auth/register", json={**REGISTER_FIELDS, "email": attack}),
        422,
        "invalid_input",
    )
    assert_problem(
        await client.post(f"{API}/auth/login", json={"email": attack, "password": attack}),
        401,
        "invalid_credentials",
    )
    assert_problem(
        await client.post(f"{API}/auth/refresh", json={"refresh_token": attack}), 401, "invalid_refresh_token"
    )
    assert (await client.post(f"{API}/auth/logout", json={"refresh_token": attack})).status_code == 204
    for params in ({"email": attack}, {"cursor": attack}, {"role": attack}, {"limit": attack}):
        response = await client.get(f"{API}/users", params=params, headers=admin.headers)
        if "email" in params:
            assert response.status_code == 200  # a literal prefix that no address has
            assert response.json() == {"items": [], "next_cursor": None}
        else:
            assert_problem(response, 422)
    for params in ({"type": attack}, {"user_id": attack}, {"cursor": attack}):
        assert_problem(await client.get(f"{API}/audit-events", params=params, headers=admin.headers), 422)
    assert await snapshot(db_conn) == before
    # As a name it is stored and returned exactly as sent.
    response = await client.patch(f"{API}/users/me", json={"full_name": attack}, headers=user.headers)
    assert response.status_code == 200
    assert response.json()["full_name"] == attack
    stored = (
        await db_conn.execute(text("SELECT full_name FROM users WHERE id = :id"), {"id": user["id"]})
    ).scalar()
    assert stored == attack
    assert (await db_conn.execute(text("SELECT count(*) FROM users"))).scalar() == len(before[0])


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/v1/users/..%2F..%2Fetc%2Fpasswd", 404),
        ("/api/v1/users/../../etc/passwd", 404),
        ("/api/v1/users/%2e%2e%2f%2e%2e%2fetc%2fpasswd", 404),
        ("/api/v1/users/not-a-uuid", 422),
        ("/api/v1/users/1%20OR%201%3D1", 422),
        ("/api/v1/users/%00", 422),
        ("/api/v1/users/00000000-0000-0000-0000-00000000000g", 422),
        ("/api/v1/users/00000000-0000-0000-0000-000000000000", 404),
        ("/api/v1/auth/sessions/..%2f..%2f", 404),
        ("/api/v1/auth/sessions/abc", 422),
    ],
)
async def test_traversal_and_non_uuid_ids(
    client: httpx.AsyncClient, db_conn: AsyncConnection, accounts: dict[str, Account], path: str, status: int
) -> None:
    before = await snapshot(db_conn)
    headers = accounts["admin"].headers
    method = "DELETE" if "/sessions/" in path else "GET"
    response = await client.request(method, path, headers=headers)
    assert_problem(response, status)
    if "/users/" in path:
        assert_problem(await client.delete(path, headers=headers), status)
        assert_problem(await client.patch(path, json={"full_name": "x"}, headers=headers), status)
    assert await snapshot(db_conn) == before


@pytest.mark.parametrize(
    "limit", ["-1", "0", "101", "1e3", "99999999999999999999999999999", "1.5", "", "ten"]
)
async def test_bad_pagination_is_422(
    client: httpx.AsyncClient, accounts: dict[str, Account], limit: str
) -> None:
    headers = accounts["admin"].headers
    for path in (f"{API}/users", f"{API}/audit-events"):
        assert_problem(await client.get(path, params={"limit": limit}, headers=headers), 422, "invalid_input")


@pytest.mark.parametrize(
    "cursor",
    [
        "x",
        "%%%",
        base64.urlsafe_b64encode(b'["2024-01-01T00:00:00+00:00", "not-a-uuid"]').decode(),
        base64.urlsafe_b64encode(b"-5").decode(),
        base64.urlsafe_b64encode(b"99999999999999999999999999").decode(),
        "A" * 201,
    ],
)
async def test_forged_cursors_are_422(
    client: httpx.AsyncClient, accounts: dict[str, Account], cursor: str
) -> None:
    headers = accounts["admin"].headers
    for path in (f"{API}/users", f"{API}/audit-events"):
        assert_problem(await client.get(path, params={"cursor": cursor}, headers=headers), 422)


async def test_header_injection_is_neither_echoed_nor_trusted(
    client: httpx.AsyncClient, accounts: dict[str, Account]
) -> None:
    # httpx refuses CR/LF in header values, so the request goes to the ASGI app directly.
    app = client._transport.app  # type: ignore[attr-defined]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    hostile = b"abc\r\nSet-Cookie: stolen=1"
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": f"{API}/users/me",
        "raw_path": f"{API}/users/me".encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"x-request-id", hostile),
            (
                b"authorization",
                b"Bearer " + accounts["user"]["tokens"]["access_token"].encode() + b"\r\nX-Evil: 1",
            ),
            (b"user-agent", b"agent\r\nX-Evil: 1"),
        ],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 401  # the tampered Authorization value is not a token
    headers = dict(start["headers"])
    assert headers[b"x-request-id"] != hostile
    assert all(b"\r" not in value and b"\n" not in value for _, value in start["headers"])
    assert b"set-cookie" not in headers
    # An overlong bearer token is just an invalid one.
    long_token = await client.get(f"{API}/users/me", headers={"Authorization": "Bearer " + "a" * 20_000})
    assert_problem(long_token, 401, "invalid_token")
