"""Roles and access: require_roles, roles read from the database on every request, deny by default,
and a role x endpoint matrix."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tests.fixtures.app import Account, build_test_app, make_account, served_routes
from tests.fixtures.helpers import API, PASSWORD, assert_problem, login, register, unique_email
from userapi.auth.dependencies import get_current_user, require_roles
from userapi.core.config import Settings
from userapi.main import create_app
from userapi.users.constants import Role
from userapi.users.models import User


async def set_user(conn: AsyncConnection, user_id: str, **values: Any) -> None:
    assignments = ", ".join(f"{column} = :{column}" for column in values)
    await conn.execute(text(f"UPDATE users SET {assignments} WHERE id = :id"), {"id": user_id, **values})


# --- the role x endpoint matrix ---------------------------------------------------------------------------
#
# One row per endpoint, one column per caller; every cell is the exact status that caller gets.
# {target} is another existing user, {unknown} an id nobody has. "deactivated" signed in while active
# and was deactivated afterwards (its token is otherwise valid).

ACTORS = ("anonymous", "user", "admin", "deactivated")

# fmt: off
MATRIX: list[tuple[str, int, int, int, int]] = [
    # endpoint                                anonymous  user  admin  deactivated
    ("GET /users/me",                            401,    200,  200,   401),
    ("PATCH /users/me",                          401,    200,  200,   401),
    ("POST /users/me/password",                  401,    204,  204,   401),
    ("GET /users",                               401,    403,  200,   401),
    ("POST /users",                              401,    403,  201,   401),
    ("GET /users/{target}",                      401,    403,  200,   401),
    ("GET /users/{unknown}",                     401,    403,  404,   401),
    ("GET /users/not-a-uuid",                    401,    403,  422,   401),
    ("PATCH /users/{target}",                    401,    403,  200,   401),
    ("DELETE /users/{target}",                   401,    403,  204,   401),
    ("DELETE /users/{unknown}",                  401,    403,  404,   401),
    ("GET /auth/sessions",                       401,    200,  200,   401),
    ("DELETE /auth/sessions/{unknown}",          401,    404,  404,   401),
    ("GET /audit-events",                        401,    403,  200,   401),
    ("POST /users/me/mfa/totp",                  401,    201,  201,   401),
    ("POST /users/me/mfa/totp/confirm",          401,    409,  409,   401),
    ("DELETE /users/me/mfa/totp",                401,    409,  409,   401),
    ("POST /users/me/mfa/recovery-codes",        401,    409,  409,   401),
    ("DELETE /users/{target}/mfa",               401,    403,  204,   401),
    ("DELETE /users/{unknown}/mfa",              401,    403,  404,   401),
    ("POST /auth/mfa/verify",                    401,    401,  401,   401),
    ("POST /auth/register",                      201,    201,  201,   201),
    ("POST /auth/login",                         200,    200,  200,   200),
    ("POST /auth/token",                         200,    200,  200,   200),
    ("POST /auth/refresh",                       401,    401,  401,   401),
    ("POST /auth/logout",                        204,    204,  204,   204),
    ("GET /health/live",                         200,    200,  200,   200),
    ("GET /health/ready",                        200,    200,  200,   200),
    ("GET /openapi.json",                        200,    200,  200,   200),
]
# fmt: on

# The body each endpoint is called with (public auth endpoints use a separate, active account).
BODIES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "PATCH /users/me": lambda ctx: {"json": {"full_name": "Changed Name"}},
    "POST /users/me/password": lambda ctx: {
        "json": {"current_password": PASSWORD, "new_password": "a different passphrase"}
    },
    "POST /users": lambda ctx: {"json": {"email": unique_email("new"), "password": PASSWORD, "role": "user"}},
    "PATCH /users/{target}": lambda ctx: {"json": {"full_name": "Renamed"}},
    "POST /auth/register": lambda ctx: {"json": {"email": unique_email("reg"), "password": PASSWORD}},
    "POST /auth/login": lambda ctx: {"json": {"email": ctx["other"]["email"], "password": PASSWORD}},
    "POST /auth/token": lambda ctx: {
        "data": {"grant_type": "password", "username": ctx["other"]["email"], "password": PASSWORD}
    },
    "POST /auth/refresh": lambda ctx: {"json": {"refresh_token": "not-a-real-refresh-token"}},
    "POST /users/me/mfa/totp": lambda ctx: {"json": {"current_password": PASSWORD}},
    "POST /users/me/mfa/totp/confirm": lambda ctx: {"json": {"code": "123456"}},
    "DELETE /users/me/mfa/totp": lambda ctx: {"json": {"current_password": PASSWORD, "code": "123456"}},
    "POST /users/me/mfa/recovery-codes": lambda ctx: {
        "json": {"current_password": PASSWORD, "code": "123456"}
    },
    "POST /auth/mfa/verify": lambda ctx: {"json": {"mfa_token": "not-a-real-mfa-token", "code": "123456"}},
    "POST /auth/logout": lambda ctx: {"json": {"refresh_token": "not-a-real-refresh-token"}},
}


def matrix_cases() -> Iterator[Any]:
    for endpoint, *statuses in MATRIX:
        for actor, status in zip(ACTORS, statuses, strict=True):
            yield pytest.param(endpoint, actor, status, id=f"{endpoint} as {actor} -> {status}")


async def make_actor(client: httpx.AsyncClient, conn: AsyncConnection, actor: str) -> Account | None:
    if actor == "anonymous":
        return None
    account = await make_account(client, conn, Role.admin if actor == "admin" else Role.user)
    if actor == "deactivated":
        await set_user(conn, account["id"], is_active=False)
    return account


@pytest.mark.parametrize(("endpoint", "actor", "expected"), list(matrix_cases()))
async def test_role_endpoint_matrix(
    client: httpx.AsyncClient, db_conn: AsyncConnection, endpoint: str, actor: str, expected: int
) -> None:
    caller = await make_actor(client, db_conn, actor)
    context: dict[str, Any] = {}
    if "{target}" in endpoint:
        context["target"] = await register(client)
    if endpoint in ("POST /auth/login", "POST /auth/token"):
        context["other"] = await register(client)
    method, path = endpoint.split(" ", 1)
    path = path.format(target=context.get("target", {}).get("id"), unknown=uuid.uuid4())
    if not path.startswith(("/health", "/openapi")):
        path = API + path
    kwargs = BODIES.get(endpoint, lambda ctx: {})(context)

    response = await client.request(method, path, headers=caller.headers if caller else {}, **kwargs)

    assert response.status_code == expected, response.text
    if expected >= 400:
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == expected
    if expected == 401 and endpoint not in ("POST /auth/refresh", "POST /auth/mfa/verify"):
        challenge = "Bearer" if caller is None else 'Bearer error="invalid_token"'
        assert response.headers["www-authenticate"] == challenge


# --- require_roles ----------------------------------------------------------------------------------------


@pytest.fixture
def guarded_app(settings: Settings, engine: AsyncEngine, db_conn: AsyncConnection) -> FastAPI:
    app = build_test_app(settings, engine, db_conn)

    @app.get("/probe/admin")
    async def admin_only(user: User = require_roles(Role.admin)) -> dict[str, str]:
        return {"id": str(user.id)}

    @app.get("/probe/any-role")
    async def any_role(user: User = require_roles(Role.user, Role.admin)) -> dict[str, str]:
        return {"id": str(user.id)}

    return app


async def test_require_roles(
    guarded_app: FastAPI, client: httpx.AsyncClient, db_conn: AsyncConnection
) -> None:
    user = await make_account(client)
    admin = await make_account(client, db_conn, Role.admin)
    transport = httpx.ASGITransport(app=guarded_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as probe:
        anonymous = await probe.get("/probe/admin")
        assert_problem(anonymous, 401, "unauthenticated")
        assert anonymous.headers["www-authenticate"] == "Bearer"

        forbidden = await probe.get("/probe/admin", headers=user.headers)
        assert assert_problem(forbidden, 403, "forbidden") == {
            "type": "https://userapi.dev/problems/forbidden",
            "title": "Forbidden",
            "status": 403,
            "detail": "Your role does not allow this",
            "code": "forbidden",
        }
        assert "www-authenticate" not in forbidden.headers

        allowed = await probe.get("/probe/admin", headers=admin.headers)
        assert allowed.status_code == 200
        assert allowed.json() == {"id": admin["id"]}

        for account in (user, admin):
            response = await probe.get("/probe/any-role", headers=account.headers)
            assert response.status_code == 200
            assert response.json() == {"id": account["id"]}
        assert (await probe.get("/probe/any-role")).status_code == 401


# --- the role is the stored one, read on every request ------------------------------------------------------


async def test_demoted_admin_token_gets_403_on_the_next_request(
    client: httpx.AsyncClient, db_conn: AsyncConnection, admin: Account
) -> None:
    assert (await client.get(f"{API}/users", headers=admin.headers)).status_code == 200

    await set_user(db_conn, admin["id"], role="user")
    assert_problem(await client.get(f"{API}/users", headers=admin.headers), 403, "forbidden")
    me = await client.get(f"{API}/users/me", headers=admin.headers)
    assert me.status_code == 200
    assert me.json()["role"] == "user"

    await set_user(db_conn, admin["id"], role="admin")
    assert (await client.get(f"{API}/users", headers=admin.headers)).status_code == 200


async def test_admin_demoted_through_the_api_loses_access_at_once(
    client: httpx.AsyncClient, db_conn: AsyncConnection, admin: Account
) -> None:
    other = await make_account(client, db_conn, Role.admin)
    assert (await client.get(f"{API}/users", headers=other.headers)).status_code == 200

    demote = await client.patch(f"{API}/users/{other['id']}", json={"role": "user"}, headers=admin.headers)
    assert demote.status_code == 200, demote.text
    assert demote.json()["role"] == "user"

    assert_problem(await client.get(f"{API}/users", headers=other.headers), 403, "forbidden")
    assert (await client.get(f"{API}/users/me", headers=other.headers)).status_code == 200


async def test_promoted_user_token_gets_200_on_the_next_request(
    client: httpx.AsyncClient, db_conn: AsyncConnection, admin: Account, user: Account
) -> None:
    assert_problem(await client.get(f"{API}/users", headers=user.headers), 403, "forbidden")

    promote = await client.patch(f"{API}/users/{user['id']}", json={"role": "admin"}, headers=admin.headers)
    assert promote.status_code == 200, promote.text
    assert (await client.get(f"{API}/users", headers=user.headers)).status_code == 200


async def test_user_promoted_in_sql_gets_200(
    client: httpx.AsyncClient, db_conn: AsyncConnection, user: Account
) -> None:
    assert (await client.get(f"{API}/users", headers=user.headers)).status_code == 403
    await set_user(db_conn, user["id"], role="admin")
    assert (await client.get(f"{API}/users", headers=user.headers)).status_code == 200


async def test_deactivated_in_sql_gets_401_at_once(
    client: httpx.AsyncClient, db_conn: AsyncConnection, user: Account
) -> None:
    assert (await client.get(f"{API}/users/me", headers=user.headers)).status_code == 200

    await set_user(db_conn, user["id"], is_active=False)
    response = await client.get(f"{API}/users/me", headers=user.headers)
    assert_problem(response, 401, "invalid_token")
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_deactivated_through_the_api_gets_401_and_its_tokens_stay_dead(
    client: httpx.AsyncClient, db_conn: AsyncConnection, admin: Account, user: Account
) -> None:
    response = await client.patch(
        f"{API}/users/{user['id']}", json={"is_active": False}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["is_active"] is False

    assert_problem(await client.get(f"{API}/users/me", headers=user.headers), 401, "invalid_token")
    refresh = await client.post(
        f"{API}/auth/refresh", json={"refresh_token": user["tokens"]["refresh_token"]}
    )
    assert_problem(refresh, 401, "invalid_refresh_token")
    login_response = await client.post(
        f"{API}/auth/login", json={"email": user["email"], "password": PASSWORD}
    )
    assert_problem(login_response, 401, "invalid_credentials")

    # Reactivated: the old token stays dead (its sessions ended), a new login works.
    response = await client.patch(
        f"{API}/users/{user['id']}", json={"is_active": True}, headers=admin.headers
    )
    assert response.status_code == 200
    assert (await client.get(f"{API}/users/me", headers=user.headers)).status_code == 401
    tokens = await login(client, user["email"])
    fresh = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert (await client.get(f"{API}/users/me", headers=fresh)).status_code == 200


async def test_deleted_user_token_gets_401(client: httpx.AsyncClient, admin: Account, user: Account) -> None:
    assert (await client.delete(f"{API}/users/{user['id']}", headers=admin.headers)).status_code == 204
    response = await client.get(f"{API}/users/me", headers=user.headers)
    assert_problem(response, 401, "invalid_token")


# --- deny by default -------------------------------------------------------------------------------------

PUBLIC_ROUTES = {
    ("POST", "/api/v1/auth/register"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/token"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/logout"),
    ("POST", "/api/v1/auth/mfa/verify"),
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/openapi.json"),
    ("GET", "/redoc"),
}
# Not user routes: guarded by their own credential (METRICS_TOKEN), for scrapers, not sessions.
OPERATOR_ROUTES = {("GET", "/metrics")}


def _dependency_calls(dependant: Any) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _dependency_calls(sub)


def _routes(app: FastAPI) -> Iterator[tuple[str, str, Any]]:
    """(method, path, dependant) of every route as served, router-level dependencies included."""
    for route in served_routes(app):
        dependant = getattr(route, "dependant", None)
        for method in sorted((route.methods or set()) - {"HEAD"}):
            yield method, route.path, dependant


def unprotected_routes(app: FastAPI) -> list[tuple[str, str]]:
    found = []
    for method, path, dependant in _routes(app):
        if (method, path) in PUBLIC_ROUTES | OPERATOR_ROUTES:
            continue
        if dependant is None or get_current_user not in set(_dependency_calls(dependant)):
            found.append((method, path))
    return found


def test_every_route_not_public_requires_a_signed_in_user(settings: Settings) -> None:
    app = create_app(settings)
    served = {(method, path) for method, path, _ in _routes(app)}

    assert unprotected_routes(app) == []
    assert served >= PUBLIC_ROUTES, "the public list names a route that does not exist"
    assert len(served - PUBLIC_ROUTES - OPERATOR_ROUTES) >= 11  # the walk did see the protected routes


def test_the_route_walk_would_catch_an_unprotected_route(settings: Settings) -> None:
    app = create_app(settings)
    router = APIRouter()

    @router.get("/api/v1/leaky")
    async def leaky() -> dict[str, str]:
        return {}

    app.include_router(router, prefix="/extra")
    assert unprotected_routes(app) == [("GET", "/extra/api/v1/leaky")]


async def test_every_protected_route_refuses_an_anonymous_request(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    checked = 0
    for method, path, _ in _routes(app):
        if (method, path) in PUBLIC_ROUTES | OPERATOR_ROUTES:
            continue
        concrete = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
        response = await client.request(method, concrete, json={})
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        checked += 1
    assert checked >= 11
