"""Router composition: public routes, and routes for signed-in users (admin routes declare a permission)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI

from userapi import health
from userapi.audit.router import router as audit_router
from userapi.auth.dependencies import get_current_user
from userapi.auth.router import public_router as auth_public
from userapi.auth.router import router as auth_protected
from userapi.keys.router import router as keys_router
from userapi.mfa.router import router as mfa_router
from userapi.roles.constants import Permission
from userapi.roles.dependencies import require_permission
from userapi.roles.router import router as roles_router
from userapi.users.router import router as users_router

# The tags of /openapi.json, in the order the docs show them; each operation has exactly one
# (tests/core/test_openapi.py).
OPENAPI_TAGS: list[dict[str, str]] = [
    {
        "name": "auth",
        "description": "Sign-up, sign-in (JSON or the OAuth 2.0 password grant), token refresh, "
        "sign-out, and the caller's sessions.",
    },
    {
        "name": "users",
        "description": "The caller's own account, and user administration (each route names the "
        "permission it needs).",
    },
    {
        "name": "mfa",
        "description": "A second factor: TOTP authenticator apps and recovery codes (RFC 6238), and "
        "its reset by an administrator (`mfa:reset`).",
    },
    {
        "name": "roles",
        "description": "The permission catalogue and roles as data: custom roles, their permissions, "
        "and how many accounts hold each (`roles:manage`).",
    },
    {
        "name": "audit",
        "description": "The audit trail of authentication and administration events (`audit:read`).",
    },
    {
        "name": "keys",
        "description": "The public signing keys (JWKS, RFC 7517) and OpenID discovery metadata, for "
        "services that verify access tokens on their own.",
    },
    {"name": "operations", "description": "Probes for orchestrators and metrics for Prometheus."},
]

# Routes anyone may call.
PUBLIC_ROUTERS: tuple[APIRouter, ...] = (health.router, auth_public, keys_router)
# Everything else: each of these routers is included with the signed-in-user requirement
# (deny by default; tests/auth/test_rbac.py walks every route to prove it).
PROTECTED_ROUTERS: tuple[APIRouter, ...] = (mfa_router, users_router, auth_protected, roles_router)
# Routers needing one permission as a whole; declared here because their domain (audit) imports
# no other domain.
PERMISSION_ROUTERS: tuple[tuple[APIRouter, Permission], ...] = ((audit_router, Permission.audit_read),)


def include_routes(app: FastAPI) -> None:
    # Included directly, not through an umbrella router: FastAPI matches nested included routers
    # level by level, and every request pays for each level (seen in the hot-path profile).
    for router in PROTECTED_ROUTERS:
        app.include_router(router, dependencies=[Depends(get_current_user)])
    for router, permission in PERMISSION_ROUTERS:
        app.include_router(router, dependencies=[Depends(get_current_user), require_permission(permission)])
    for router in PUBLIC_ROUTERS:
        app.include_router(router)
