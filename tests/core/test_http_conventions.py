"""HTTP conventions on every route: HEAD wherever GET (RFC 9110 9.3.2), 204s without body or content type,
no-store token responses (RFC 6749 5.1), no redirect built from the Host header, and proxy headers
believed only from TRUSTED_PROXIES (in the app and in a real `userapi serve`)."""

from __future__ import annotations

import re
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
import pyotp
import pytest
from fastapi import FastAPI, Request, Response
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tests.fixtures.app import Account, build_test_app, make_account, served_routes
from tests.fixtures.helpers import (
    API,
    PASSWORD,
    asgi_call,
    assert_problem,
    make_settings,
    register,
    running_server,
    server_env,
    unique_email,
)
from userapi.auth.schemas import TokenPair
from userapi.core.config import Settings
from userapi.core.security import new_opaque_token, opaque_token_hash


def _dependency_calls(dependant: Any) -> set[Any]:
    found = set()
    for sub in dependant.dependencies:
        found.add(sub.call)
        found |= _dependency_calls(sub)
    return found


def concrete(path: str, admin: Account) -> str:
    """A route template with its path parameters filled in (the admin's own id for users)."""
    return re.sub(r"\{[^}]+\}", admin["id"], path)


# --- HEAD wherever GET -----------------------------------------------------------------------------------


def get_routes(app: FastAPI) -> list[str]:
    return sorted({route.path for route in served_routes(app) if "GET" in (route.methods or ())})


@pytest.mark.parametrize("signed_in", [True, False], ids=["admin", "anonymous"])
async def test_every_get_route_answers_head_as_a_bodiless_get(
    app: FastAPI, client: httpx.AsyncClient, admin: Account, signed_in: bool
) -> None:
    paths = get_routes(app)
    assert {"/health/live", "/health/ready", "/metrics", "/docs", "/openapi.json", f"{API}/users/me"} <= set(
        paths
    )
    headers = admin.headers if signed_in else {}
    for path in paths:
        url = concrete(path, admin)
        get_status, get_headers, get_body = await asgi_call(app, "GET", url, headers)
        status, head_headers, body = await asgi_call(app, "HEAD", url, headers)
        assert status == get_status, (path, status, get_status)
        assert status != 405, path
        assert body == b"", (path, body[:80])
        got, head = dict(get_headers), dict(head_headers)
        assert head.get(b"content-type") == got.get(b"content-type"), path
        if b"content-length" in got and path != "/metrics":  # /metrics' own count changes in between
            assert head[b"content-length"] == got[b"content-length"], path
        assert get_body or get_status == 204, path  # the GET did have a body to leave out


async def test_head_is_counted_and_logged_as_head(app: FastAPI, client: httpx.AsyncClient) -> None:
    status, _, _ = await asgi_call(app, "HEAD", "/health/live")
    assert status == 200
    metrics = (await client.get("/metrics")).text
    assert 'userapi_http_requests_total{method="HEAD",route="/health/live",status="200"}' in metrics


async def test_head_on_a_route_without_get_is_still_405(app: FastAPI) -> None:
    status, headers, body = await asgi_call(app, "HEAD", f"{API}/auth/login")
    assert status == 405
    assert dict(headers)[b"allow"] == b"POST"
    assert body == b""


# --- 204: no body, no content type ---------------------------------------------------------------------

NoContentCall = Callable[
    [httpx.AsyncClient, Account, AsyncConnection], Awaitable[tuple[str, str, dict[str, Any]]]
]


async def _logout(
    client: httpx.AsyncClient, account: Account, conn: AsyncConnection
) -> tuple[str, str, dict[str, Any]]:
    return "POST", f"{API}/auth/logout", {"json": {"refresh_token": account["tokens"]["refresh_token"]}}


async def _password(
    client: httpx.AsyncClient, account: Account, conn: AsyncConnection
) -> tuple[str, str, dict[str, Any]]:
    body = {"current_password": PASSWORD, "new_password": "a different passphrase"}
    return "POST", f"{API}/users/me/password", {"json": body, "headers": account.headers}


async def _delete_user(
    client: httpx.AsyncClient, account: Account, conn: AsyncConnection
) -> tuple[str, str, dict[str, Any]]:
    target = await register(client)
    return "DELETE", f"{API}/users/{target['id']}", {"headers": account.headers}


async def _end_session(
    client: httpx.AsyncClient, account: Account, conn: AsyncConnection
) -> tuple[str, str, dict[str, Any]]:
    sessions = (await client.get(f"{API}/auth/sessions", headers=account.headers)).json()
    return "DELETE", f"{API}/auth/sessions/{sessions[0]['id']}", {"headers": account.headers}


async def _end_user_sessions(
    client: httpx.AsyncClient, account: Account, conn: AsyncConnection
) -> tuple[str, str, dict[str, Any]]:
    target = await register(client)
    return "DELETE", f"{API}/users/{target['id']}/sessions", {"headers": account.headers}


async def _delete_role(
    client: httpx.AsyncClient, account: Account, conn: AsyncConnection
) -> tuple[str, str, dict[str, Any]]:
    name = f"probe-{uuid.uuid4().hex[:8]}"
    created = await client.post(
        f"{API}/roles", json={"name": name, "permissions": []}, headers=account.headers
    )
    assert created.status_code == 201, created.text
    return "DELETE", f"{API}/roles/{name}", {"headers": account.headers}


async def _mailed_token(conn: AsyncConnection, user_id: str, purpose: str, email: str) -> str:
    """A live mailed token, stored as the service stores one (only its hash)."""
    raw = new_opaque_token()
    await conn.execute(
        text(
            "INSERT INTO account_tokens (user_id, purpose, token_hash, email, expires_at) "
            "VALUES (:u, :p, :h, :e, now() + interval '10 minutes')"
        ),
        {"u": user_id, "p": purpose, "h": opaque_token_hash(raw), "e": email},
    )
    return raw


async def _reset_password(
    client: httpx.AsyncClient, account: Account, conn: AsyncConnection
) -> tuple[str, str, dict[str, Any]]:
    target = await register(client)
    token = await _mailed_token(conn, target["id"], "password_reset", target["email"])
    body = {"token": token, "new_password": "a new passphrase"}
    return "POST", f"{API}/auth/password/reset", {"json": body}


async def _verify_email(
    client: httpx.AsyncClient, account: Account, conn: AsyncConnection
) -> tuple[str, str, dict[str, Any]]:
    target = await register(client)
    token = await _mailed_token(conn, target["id"], "email_verification", target["email"])
    return "POST", f"{API}/auth/email/verify", {"json": {"token": token}}


async def _confirm_email_change(
    client: httpx.AsyncClient, account: Account, conn: AsyncConnection
) -> tuple[str, str, dict[str, Any]]:
    target = await register(client)
    token = await _mailed_token(conn, target["id"], "email_change", unique_email("moved"))
    return "POST", f"{API}/auth/email/change/confirm", {"json": {"token": token}}


async def _disable_totp(
    client: httpx.AsyncClient, account: Account, conn: AsyncConnection
) -> tuple[str, str, dict[str, Any]]:
    # On the real clock: confirm with this step's code, turn off with the next step's (within the
    # one step of drift accepted, and later than the step just used).
    owner = await make_account(client)
    enrol = await client.post(
        f"{API}/users/me/mfa/totp", json={"current_password": PASSWORD}, headers=owner.headers
    )
    totp = pyotp.TOTP(enrol.json()["secret"])
    confirmed = await client.post(
        f"{API}/users/me/mfa/totp/confirm", json={"code": totp.now()}, headers=owner.headers
    )
    assert confirmed.status_code == 200, confirmed.text
    body = {"current_password": PASSWORD, "code": totp.at(time.time() + totp.interval)}
    return "DELETE", f"{API}/users/me/mfa/totp", {"json": body, "headers": owner.headers}


async def _reset_mfa(
    client: httpx.AsyncClient, account: Account, conn: AsyncConnection
) -> tuple[str, str, dict[str, Any]]:
    target = await register(client)
    return "DELETE", f"{API}/users/{target['id']}/mfa", {"headers": account.headers}


async def _end_one_user_session(
    client: httpx.AsyncClient, account: Account, conn: AsyncConnection
) -> tuple[str, str, dict[str, Any]]:
    target = await make_account(client)
    sessions = (await client.get(f"{API}/users/{target['id']}/sessions", headers=account.headers)).json()
    return "DELETE", f"{API}/users/{target['id']}/sessions/{sessions[0]['id']}", {"headers": account.headers}


# Every 204 route, and how to make it answer 204 (the walk below fails when one is missing here).
NO_CONTENT_ROUTES: dict[tuple[str, str], NoContentCall] = {
    ("POST", f"{API}/auth/logout"): _logout,
    ("POST", f"{API}/users/me/password"): _password,
    ("DELETE", f"{API}/users/{{user_id}}"): _delete_user,
    ("DELETE", f"{API}/auth/sessions/{{session_id}}"): _end_session,
    ("DELETE", f"{API}/users/{{user_id}}/sessions"): _end_user_sessions,
    ("DELETE", f"{API}/roles/{{name}}"): _delete_role,
    ("POST", f"{API}/auth/password/reset"): _reset_password,
    ("POST", f"{API}/auth/email/verify"): _verify_email,
    ("POST", f"{API}/auth/email/change/confirm"): _confirm_email_change,
    ("DELETE", f"{API}/users/me/mfa/totp"): _disable_totp,
    ("DELETE", f"{API}/users/{{user_id}}/mfa"): _reset_mfa,
    ("DELETE", f"{API}/users/{{user_id}}/sessions/{{session_id}}"): _end_one_user_session,
}


def test_the_no_content_table_names_every_204_route(app: FastAPI) -> None:
    declared = {
        (method, route.path)
        for route in served_routes(app)
        if getattr(route, "status_code", None) == 204
        for method in route.methods
    }
    assert declared == set(NO_CONTENT_ROUTES)


@pytest.mark.parametrize(("method", "path"), list(NO_CONTENT_ROUTES))
async def test_every_204_has_no_body_and_no_content_type(
    app: FastAPI, client: httpx.AsyncClient, admin: Account, db_conn: AsyncConnection, method: str, path: str
) -> None:
    verb, url, request = await NO_CONTENT_ROUTES[(method, path)](client, admin, db_conn)
    headers = {"content-type": "application/json", **request.get("headers", {})}
    body = httpx.Request("POST", "http://x", json=request["json"]).content if "json" in request else b""
    status, response_headers, content = await asgi_call(app, verb, url, headers, body)
    assert status == 204, content
    names = {name for name, _ in response_headers}
    assert b"content-type" not in names
    assert b"content-length" not in names
    assert content == b""


async def test_any_204_loses_its_content_headers(
    settings: Settings, engine: AsyncEngine, db_conn: AsyncConnection
) -> None:
    """The rule holds for routes yet to come, whatever response class they use."""
    app = build_test_app(settings, engine, db_conn)

    @app.get("/probe/no-content")
    async def no_content() -> Response:
        return Response(b"", status_code=204, media_type="application/json")

    status, headers, body = await asgi_call(app, "GET", "/probe/no-content")
    assert (status, body) == (204, b"")
    assert not {b"content-type", b"content-length"} & {name for name, _ in headers}


# --- token responses are not stored -------------------------------------------------------------------


def test_every_route_answering_tokens_declares_no_store(app: FastAPI) -> None:
    from userapi.core.http import no_store  # here: the other tests must run without it (fail-before)

    token_routes = [r for r in served_routes(app) if getattr(r, "response_model", None) is TokenPair]
    assert len(token_routes) >= 3
    for route in token_routes:
        assert no_store in _dependency_calls(route.dependant), route.path


async def test_token_responses_carry_no_store(client: httpx.AsyncClient, user: Account) -> None:
    login = await client.post(f"{API}/auth/login", json={"email": user["email"], "password": PASSWORD})
    form = {"grant_type": "password", "username": user["email"], "password": PASSWORD}
    token = await client.post(f"{API}/auth/token", data=form)
    refresh = await client.post(f"{API}/auth/refresh", json={"refresh_token": login.json()["refresh_token"]})
    for response in (login, token, refresh):
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["pragma"] == "no-cache"
    # Not a blanket header: a public, non-token response says nothing of the kind.
    assert "cache-control" not in (await client.get("/health/live")).headers


# --- no redirect from the Host header ------------------------------------------------------------------


async def test_no_redirect_is_built_from_the_host_header(app: FastAPI, admin: Account) -> None:
    status, headers, _ = await asgi_call(
        app, "GET", f"{API}/users/", {"host": "evil.example", **admin.headers}
    )
    assert status == 404
    assert b"location" not in dict(headers)
    checked = 0
    for route in served_routes(app):
        # A mount (the docs' static assets) has no methods of its own: it serves GET.
        for method in sorted((getattr(route, "methods", None) or {"GET"}) - {"HEAD"}):
            for variant in (concrete(route.path, admin) + "/", concrete(route.path, admin) + "//"):
                status, headers, _ = await asgi_call(
                    app, method, variant, {"host": "evil.example", **admin.headers}
                )
                assert not 300 <= status < 400, (method, variant, status)
                assert b"location" not in dict(headers), (method, variant)
                checked += 1
    assert checked > 30


async def test_a_trailing_slash_is_a_404_problem_document(client: httpx.AsyncClient, admin: Account) -> None:
    response = await client.get(f"{API}/users/", headers={"host": "evil.example", **admin.headers})
    assert_problem(response, 404, "not_found")
    assert "location" not in response.headers


# --- proxy headers: only from TRUSTED_PROXIES ------------------------------------------------------------


def probed_app(
    settings: Settings, engine: AsyncEngine, db_conn: AsyncConnection, trusted: list[str]
) -> FastAPI:
    app = build_test_app(
        make_settings(settings.plain_database_url or "", trusted_proxies=trusted), engine, db_conn
    )

    @app.get("/probe/caller")
    async def caller(request: Request) -> dict[str, Any]:
        return {"client": request.client.host if request.client else None, "scheme": request.url.scheme}

    return app


FORWARDED = {
    "x-forwarded-for": "198.51.100.23",
    "x-forwarded-proto": "https",
    "x-forwarded-host": "evil.example",
}


@pytest.mark.parametrize(
    ("trusted", "peer", "expected"),
    [
        ([], "127.0.0.1", ("127.0.0.1", "http")),  # nobody trusted: headers ignored
        (["10.0.0.0/8"], "127.0.0.1", ("127.0.0.1", "http")),  # the peer is not a trusted proxy
        (["127.0.0.1"], "127.0.0.1", ("198.51.100.23", "https")),  # the peer is one
        (["127.0.0.0/8", "198.51.100.0/24"], "127.0.0.1", ("127.0.0.1", "https")),  # every hop trusted
    ],
)
async def test_proxy_headers_are_believed_only_from_trusted_proxies(
    settings: Settings,
    engine: AsyncEngine,
    db_conn: AsyncConnection,
    trusted: list[str],
    peer: str,
    expected: tuple[str, str],
) -> None:
    app = probed_app(settings, engine, db_conn, trusted)
    status, _, body = await asgi_call(app, "GET", "/probe/caller", FORWARDED, peer=peer)
    assert status == 200
    seen = orjson.loads(body)
    assert (seen["client"], seen["scheme"]) == expected


async def test_a_client_cannot_choose_the_scheme_through_a_trusted_proxy(
    settings: Settings, engine: AsyncEngine, db_conn: AsyncConnection
) -> None:
    app = probed_app(settings, engine, db_conn, ["127.0.0.1"])
    # The client sent "https"; our proxy appended what it saw ("http"): the last value counts.
    status, _, body = await asgi_call(app, "GET", "/probe/caller", {"x-forwarded-proto": "https, http"})
    assert status == 200
    assert b'"scheme":"http"' in body
    _, _, junk = await asgi_call(app, "GET", "/probe/caller", {"x-forwarded-proto": "gopher"})
    assert b'"scheme":"http"' in junk


def _session_ip(base: str, forwarded_for: str) -> str:
    email = unique_email("proxied")
    headers = {"X-Forwarded-For": forwarded_for, "X-Forwarded-Proto": "https"}
    with httpx.Client(base_url=base, timeout=30, headers=headers) as http:
        assert (
            http.post(f"{API}/auth/register", json={"email": email, "password": PASSWORD}).status_code == 201
        )
        tokens = http.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD}).json()
        sessions = http.get(
            f"{API}/auth/sessions", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
        # A monitor's HEAD probe works against the real server too (`curl -I`).
        head = http.head("/health/live")
        assert (head.status_code, head.headers["content-type"]) == (200, "application/json"), head
        return str(sessions.json()[0]["ip"])


def test_a_real_server_believes_proxy_headers_only_from_trusted_proxies(database_url: str) -> None:
    """uvicorn trusts X-Forwarded-* from 127.0.0.1 by default; `userapi serve` must not let it."""
    with running_server(server_env(database_url)) as base:
        assert _session_ip(base, "203.0.113.77") == "127.0.0.1"
    with running_server(server_env(database_url, TRUSTED_PROXIES="127.0.0.1")) as base:
        assert _session_ip(base, "203.0.113.77") == "203.0.113.77"


# --- HEAD through a real server ----------------------------------------------------------------------


def _exchange(url: str, requests: list[bytes]) -> list[bytes]:
    """Send each request on one keep-alive connection, reading each answer's head (and its body
    when it announces one), so a server that breaks the connection after an answer is caught."""
    host, port = url.removeprefix("http://").split(":")
    answers = []
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        buffer = b""
        for request in requests:
            conn.sendall(request)
            while b"\r\n\r\n" not in buffer:
                chunk = conn.recv(65536)
                assert chunk, f"the server closed the connection; answers so far: {answers}"
                buffer += chunk
            head, buffer = buffer.split(b"\r\n\r\n", 1)
            answers.append(head)
            length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            if not request.startswith(b"HEAD") and length:
                while len(buffer) < int(length.group(1)):
                    buffer += conn.recv(65536)
                buffer = buffer[int(length.group(1)) :]
    return answers


@pytest.mark.parametrize("path", ["/health/live", "/.well-known/jwks.json", "/openapi.json"])
def test_head_through_uvicorn_keeps_the_connection(live_server: str, path: str) -> None:
    """uvicorn, unlike the in-process tests' ASGI calls, checks the body it sends against the
    Content-Length: a HEAD routed as GET must still be a HEAD to the server."""
    request = f" {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    head, get = _exchange(live_server, [b"HEAD" + request, b"GET" + request])
    assert head.startswith(b"HTTP/1.1 200"), head
    assert get.startswith(b"HTTP/1.1 200"), get
    assert re.search(rb"(?im)^content-length:", head), head
