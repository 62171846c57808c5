"""Roles and access: require_permission, roles read from the database on every request, deny by default,
a role x endpoint matrix, and a walk proving each admin route checks exactly its permission."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tests.fixtures.app import Account, build_test_app, create_role, make_account, served_routes
from tests.fixtures.helpers import API, PASSWORD, assert_problem, login, register, unique_email
from userapi.auth.dependencies import Principal, get_current_user
from userapi.core.config import Settings
from userapi.main import create_app
from userapi.roles.constants import Permission
from userapi.roles.dependencies import require_permission


async def set_user(conn: AsyncConnection, user_id: str, **values: Any) -> None:
    assignments = ", ".join(f"{column} = :{column}" for column in values)
    await conn.execute(text(f"UPDATE users SET {assignments} WHERE id = :id"), {"id": user_id, **values})


# --- the role x endpoint matrix ---------------------------------------------------------------------------
#
# One row per endpoint, one column per caller; every cell is the exact status that caller gets.
# "support" holds a custom role granting only users:read. {target} is another existing user, {unknown}
# an id nobody has, {role} an unused custom role, {nobody} a role name no role has. "deactivated"
# signed in while active and was deactivated afterwards (its token is otherwise valid).

ACTORS = ("anonymous", "user", "support", "admin", "deactivated")

# fmt: off
MATRIX: list[tuple[str, int, int, int, int, int]] = [
    # endpoint                                anonymous  user  support  admin  deactivated
    ("GET /users/me",                            401,    200,    200,   200,   401),
    ("PATCH /users/me",                          401,    200,    200,   200,   401),
    ("POST /users/me/password",                  401,    204,    204,   204,   401),
    ("GET /users",                               401,    403,    200,   200,   401),
    ("POST /users",                              401,    403,    403,   201,   401),
    ("POST /users with a role",                  401,    403,    403,   201,   401),
    ("GET /users/{target}",                      401,    403,    200,   200,   401),
    ("GET /users/{unknown}",                     401,    403,    404,   404,   401),
    ("GET /users/not-a-uuid",                    401,    403,    422,   422,   401),
    ("PATCH /users/{target}",                    401,    403,    403,   200,   401),
    ("PATCH /users/{target} role",               401,    403,    403,   200,   401),
    ("DELETE /users/{target}",                   401,    403,    403,   204,   401),
    ("DELETE /users/{unknown}",                  401,    403,    403,   404,   401),
    ("DELETE /users/{target}/sessions",          401,    403,    403,   204,   401),
    ("GET /auth/sessions",                       401,    200,    200,   200,   401),
    ("DELETE /auth/sessions/{unknown}",          401,    404,    404,   404,   401),
    ("GET /audit-events",                        401,    403,    403,   200,   401),
    ("GET /permissions",                         401,    403,    403,   200,   401),
    ("GET /roles",                               401,    403,    403,   200,   401),
    ("POST /roles",                              401,    403,    403,   201,   401),
    ("GET /roles/{role}",                        401,    403,    403,   200,   401),
    ("GET /roles/{nobody}",                      401,    403,    403,   404,   401),
    ("GET /roles/Not_A_Name",                    401,    403,    403,   422,   401),
    ("PATCH /roles/{role}",                      401,    403,    403,   200,   401),
    ("PATCH /roles/admin",                       401,    403,    403,   409,   401),
    ("DELETE /roles/{role}",                     401,    403,    403,   204,   401),
    ("DELETE /roles/user",                       401,    403,    403,   409,   401),
    ("POST /users/me/mfa/totp",                  401,    201,    201,   201,   401),
    ("POST /users/me/mfa/totp/confirm",          401,    409,    409,   409,   401),
    ("DELETE /users/me/mfa/totp",                401,    409,    409,   409,   401),
    ("POST /users/me/mfa/recovery-codes",        401,    409,    409,   409,   401),
    ("DELETE /users/{target}/mfa",               401,    403,    403,   204,   401),
    ("DELETE /users/{unknown}/mfa",              401,    403,    403,   404,   401),
    ("POST /auth/mfa/verify",                    401,    401,    401,   401,   401),
    ("POST /auth/register",                      201,    201,    201,   201,   201),
    ("POST /auth/login",                         200,    200,    200,   200,   200),
    ("POST /auth/token",                         200,    200,    200,   200,   200),
    ("POST /auth/refresh",                       401,    401,    401,   401,   401),
    ("POST /auth/logout",                        204,    204,    204,   204,   204),
    ("GET /health/live",                         200,    200,    200,   200,   200),
    ("GET /health/ready",                        200,    200,    200,   200,   200),
    ("GET /openapi.json",                        200,    200,    200,   200,   200),
]
# fmt: on

# The body each endpoint is called with (public auth endpoints use a separate, active account).
BODIES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "PATCH /users/me": lambda ctx: {"json": {"full_name": "Changed Name"}},
    "POST /users/me/password": lambda ctx: {
        "json": {"current_password": PASSWORD, "new_password": "a different passphrase"}
    },
    "POST /users": lambda ctx: {"json": {"email": unique_email("new"), "password": PASSWORD}},
    "POST /users with a role": lambda ctx: {
        "json": {"email": unique_email("new"), "password": PASSWORD, "role": ctx["role"]}
    },
    "PATCH /users/{target}": lambda ctx: {"json": {"full_name": "Renamed"}},
    "PATCH /users/{target} role": lambda ctx: {"json": {"role": ctx["role"]}},
    "POST /roles": lambda ctx: {
        "json": {"name": f"made-{uuid.uuid4().hex[:8]}", "permissions": ["users:read"]}
    },
    "PATCH /roles/{role}": lambda ctx: {"json": {"permissions": ["users:read", "audit:read"]}},
    "PATCH /roles/admin": lambda ctx: {"json": {"description": "mine now"}},
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
    roles = {"admin": "admin", "support": await create_role(conn, "users:read")}
    account = await make_account(client, conn, roles.get(actor, "user"))
    if actor == "deactivated":
        await set_user(conn, account["id"], is_active=False)
    return account


@pytest.mark.parametrize(("endpoint", "actor", "expected"), list(matrix_cases()))
async def test_role_endpoint_matrix(
    client: httpx.AsyncClient, db_conn: AsyncConnection, endpoint: str, actor: str, expected: int
) -> None:
    caller = await make_actor(client, db_conn, actor)
    context: dict[str, Any] = {"role": await create_role(db_conn, "users:read")}
    if "{target}" in endpoint:
        context["target"] = await register(client)
    if endpoint in ("POST /auth/login", "POST /auth/token"):
        context["other"] = await register(client)
    method, path = endpoint.split(" ")[:2]
    path = path.format(
        target=context.get("target", {}).get("id"),
        unknown=uuid.uuid4(),
        role=context["role"],
        nobody="nobody",
    )
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
    if expected == 403 and actor in ("user", "support"):
        assert response.json()["code"] == "forbidden"
        assert response.json()["missing_permissions"]


# --- require_permission -------------------------------------------------------------------------------------


@pytest.fixture
def guarded_app(settings: Settings, engine: AsyncEngine, db_conn: AsyncConnection) -> FastAPI:
    app = build_test_app(settings, engine, db_conn)

    @app.get("/probe/audit")
    async def audit_readers(caller: Principal = require_permission(Permission.audit_read)) -> dict[str, str]:
        return {"id": str(caller.user.id)}

    return app


async def test_require_permission(
    guarded_app: FastAPI, client: httpx.AsyncClient, db_conn: AsyncConnection
) -> None:
    user = await make_account(client)
    auditor = await make_account(client, db_conn, await create_role(db_conn, "audit:read"))
    admin = await make_account(client, db_conn, "admin")
    transport = httpx.ASGITransport(app=guarded_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as probe:
        anonymous = await probe.get("/probe/audit")
        assert_problem(anonymous, 401, "unauthenticated")
        assert anonymous.headers["www-authenticate"] == "Bearer"

        forbidden = await probe.get("/probe/audit", headers=user.headers)
        assert assert_problem(forbidden, 403, "forbidden") == {
            "type": "https://userapi.dev/problems/forbidden",
            "title": "Forbidden",
            "status": 403,
            "detail": "This needs the permission audit:read",
            "code": "forbidden",
            "missing_permissions": ["audit:read"],
        }
        assert "www-authenticate" not in forbidden.headers

        for account in (auditor, admin):
            allowed = await probe.get("/probe/audit", headers=account.headers)
            assert allowed.status_code == 200
            assert allowed.json() == {"id": account["id"]}


def test_require_permission_refuses_a_name_outside_the_catalogue() -> None:
    with pytest.raises(ValueError, match="catalogue"):
        require_permission("users:reed")


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
    other = await make_account(client, db_conn, "admin")
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
    # Mailed-link flows: the token (or, for forgot, nothing) is the credential.
    ("POST", "/api/v1/auth/password/forgot"),
    ("POST", "/api/v1/auth/password/reset"),
    ("POST", "/api/v1/auth/email/verify"),
    ("POST", "/api/v1/auth/email/change/confirm"),
    ("POST", "/api/v1/auth/mfa/verify"),
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
    ("GET", "/.well-known/jwks.json"),
    ("GET", "/.well-known/openid-configuration"),
    ("GET", "/docs"),
    ("GET", "/docs/assets/redoc.standalone.js"),
    ("GET", "/openapi.json"),
    ("GET", "/redoc"),
}
# Not user routes: guarded by their own credential (METRICS_TOKEN), for scrapers, not sessions.
OPERATOR_ROUTES = {("GET", "/metrics")}


def _dependency_calls(dependant: Any) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _dependency_calls(sub)


# The web pages guard themselves with the console session, not a bearer token: tests/web walks them.
WEB_PAGES = ("/admin", "/account")


def _is_web_page(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in WEB_PAGES)


def _routes(app: FastAPI) -> Iterator[tuple[str, str, Any]]:
    """(method, path, dependant) of every API route as served, router-level dependencies included."""
    for route in served_routes(app):
        if _is_web_page(route.path):
            continue
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


# --- every admin route declares its permission, and checks exactly that one ------------------------------

# Protected routes any signed-in account may call (its own account and sessions).
SIGNED_IN_ONLY = {
    ("GET", "/api/v1/users/me"),
    ("PATCH", "/api/v1/users/me"),
    ("POST", "/api/v1/users/me/password"),
    ("GET", "/api/v1/auth/sessions"),
    ("DELETE", "/api/v1/auth/sessions/{session_id}"),
    ("POST", "/api/v1/users/me/email"),
    ("POST", "/api/v1/auth/email/verify/resend"),
    ("POST", "/api/v1/users/me/mfa/totp"),
    ("POST", "/api/v1/users/me/mfa/totp/confirm"),
    ("DELETE", "/api/v1/users/me/mfa/totp"),
    ("POST", "/api/v1/users/me/mfa/recovery-codes"),
}
ROUTE_PERMISSIONS = {
    ("GET", "/api/v1/users"): "users:read",
    ("POST", "/api/v1/users"): "users:create",
    ("GET", "/api/v1/users/{user_id}"): "users:read",
    ("PATCH", "/api/v1/users/{user_id}"): "users:update",
    ("DELETE", "/api/v1/users/{user_id}"): "users:delete",
    ("DELETE", "/api/v1/users/{user_id}/sessions"): "sessions:revoke",
    ("GET", "/api/v1/users/{user_id}/sessions"): "users:read",
    ("DELETE", "/api/v1/users/{user_id}/sessions/{session_id}"): "sessions:revoke",
    ("GET", "/api/v1/audit-events"): "audit:read",
    ("GET", "/api/v1/permissions"): "roles:manage",
    ("GET", "/api/v1/roles"): "roles:manage",
    ("POST", "/api/v1/roles"): "roles:manage",
    ("GET", "/api/v1/roles/{name}"): "roles:manage",
    ("PATCH", "/api/v1/roles/{name}"): "roles:manage",
    ("DELETE", "/api/v1/roles/{name}"): "roles:manage",
    ("DELETE", "/api/v1/users/{user_id}/mfa"): "mfa:reset",
}
# Required by a field rather than a route: a `role` in POST /users or PATCH /users/{id}.
FIELD_PERMISSIONS = {"users:manage-roles"}
# In the catalogue for a route still to come (none now): the test below fails until such a route
# joins ROUTE_PERMISSIONS.
NOT_YET_REQUIRED: set[str] = set()


def declared_permissions(app: FastAPI) -> dict[tuple[str, str], list[str]]:
    """The permissions each route's guards require, found in its dependency tree."""
    found: dict[tuple[str, str], list[str]] = {}
    for method, path, dependant in _routes(app):
        calls = set(_dependency_calls(dependant)) if dependant is not None else set()
        required = sorted(p for call in calls if (p := getattr(call, "required_permission", None)))
        found[(method, path)] = required
    return found


def test_every_admin_route_declares_exactly_its_permission(settings: Settings) -> None:
    declared = declared_permissions(create_app(settings))
    protected = {route for route in declared if route not in PUBLIC_ROUTES | OPERATOR_ROUTES}

    assert protected == SIGNED_IN_ONLY | ROUTE_PERMISSIONS.keys()
    assert {route: declared[route] for route in ROUTE_PERMISSIONS} == {
        route: [permission] for route, permission in ROUTE_PERMISSIONS.items()
    }
    assert all(declared[route] == [] for route in SIGNED_IN_ONLY)


def test_every_permission_of_the_catalogue_is_required_somewhere() -> None:
    required = set(ROUTE_PERMISSIONS.values()) | FIELD_PERMISSIONS
    assert required | NOT_YET_REQUIRED == {p.value for p in Permission}
    assert not required & NOT_YET_REQUIRED


def test_the_declared_walk_would_catch_a_route_with_the_wrong_permission(settings: Settings) -> None:
    app = create_app(settings)
    router = APIRouter()

    @router.get("/api/v1/users-export")
    async def export(caller: Principal = require_permission(Permission.audit_read)) -> dict[str, str]:
        return {}

    app.include_router(router, dependencies=[Depends(get_current_user)])
    assert declared_permissions(app)[("GET", "/api/v1/users-export")] == ["audit:read"]


def _concrete(path: str, ctx: dict[str, str]) -> str:
    concrete = path.replace("{user_id}", ctx["target"]).replace("{name}", ctx["role"])
    return concrete.replace("{session_id}", ctx.get("session", ""))


def _body(method: str, path: str) -> dict[str, Any]:
    bodies: dict[tuple[str, str], dict[str, Any]] = {
        ("POST", "/api/v1/users"): {"email": unique_email("walk"), "password": PASSWORD},
        ("PATCH", "/api/v1/users/{user_id}"): {"full_name": "Walked"},
        ("POST", "/api/v1/roles"): {"name": f"walk-{uuid.uuid4().hex[:8]}"},
        ("PATCH", "/api/v1/roles/{name}"): {"description": "walked"},
    }
    return {"json": bodies[(method, path)]} if (method, path) in bodies else {}


@pytest.mark.parametrize(("method", "path"), sorted(ROUTE_PERMISSIONS), ids=" ".join)
async def test_each_admin_route_checks_exactly_its_permission(
    client: httpx.AsyncClient, db_conn: AsyncConnection, method: str, path: str
) -> None:
    """A role holding only the route's permission gets through; one holding every other permission
    gets 403 naming it. Real tokens, real requests, roles read from the database."""
    permission = ROUTE_PERMISSIONS[(method, path)]
    everything_else = sorted({p.value for p in Permission} - {permission})
    only = await make_account(client, db_conn, await create_role(db_conn, permission))
    others = await make_account(client, db_conn, await create_role(db_conn, *everything_else))

    target = await make_account(client)
    ctx = {"target": target["id"], "role": await create_role(db_conn)}
    if "{session_id}" in path:
        mine = (await client.get(f"{API}/auth/sessions", headers=target.headers)).json()
        ctx["session"] = mine[0]["id"]
    refused = await client.request(
        method, _concrete(path, ctx), headers=others.headers, **_body(method, path)
    )
    assert assert_problem(refused, 403, "forbidden")["missing_permissions"] == [permission]

    allowed = await client.request(method, _concrete(path, ctx), headers=only.headers, **_body(method, path))
    assert 200 <= allowed.status_code < 300, allowed.text


async def test_assigning_a_role_needs_users_manage_roles_as_well(
    client: httpx.AsyncClient, db_conn: AsyncConnection
) -> None:
    updater = await make_account(client, db_conn, await create_role(db_conn, "users:update", "users:create"))
    assigner = await make_account(
        client, db_conn, await create_role(db_conn, "users:update", "users:create", "users:manage-roles")
    )
    target = await register(client)
    plain = await create_role(db_conn)  # grants nothing, so anyone may assign it
    for method, path, body in (
        ("PATCH", f"{API}/users/{target['id']}", {"role": plain}),
        ("POST", f"{API}/users", {"email": unique_email(), "password": PASSWORD, "role": plain}),
    ):
        refused = await client.request(method, path, json=body, headers=updater.headers)
        assert assert_problem(refused, 403, "forbidden")["missing_permissions"] == ["users:manage-roles"]
        allowed = await client.request(method, path, json=body, headers=assigner.headers)
        assert allowed.status_code in (200, 201), allowed.text
        assert allowed.json()["role"] == plain
    # Without `role` the updater needs nothing more.
    renamed = await client.patch(
        f"{API}/users/{target['id']}", json={"full_name": "X"}, headers=updater.headers
    )
    assert renamed.status_code == 200, renamed.text
