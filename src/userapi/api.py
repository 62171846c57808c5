"""Router composition: public routes, routes for signed-in users, and admin-only routes."""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI

from userapi import health
from userapi.audit.router import router as audit_router
from userapi.auth.dependencies import get_current_user, require_roles
from userapi.auth.router import public_router as auth_public
from userapi.auth.router import router as auth_protected
from userapi.mfa.router import router as mfa_router
from userapi.users.constants import Role
from userapi.users.router import router as users_router

# Routes anyone may call.
PUBLIC_ROUTERS: tuple[APIRouter, ...] = (health.router, auth_public)
# Everything else: each of these routers is included with the signed-in-user requirement
# (deny by default; tests/auth/test_rbac.py walks every route to prove it).
PROTECTED_ROUTERS: tuple[APIRouter, ...] = (mfa_router, users_router, auth_protected)
# Admin-only as a whole; declared here because their domain (audit) imports no other domain.
ADMIN_ROUTERS: tuple[APIRouter, ...] = (audit_router,)


def include_routes(app: FastAPI) -> None:
    # Included directly, not through an umbrella router: FastAPI matches nested included routers
    # level by level, and every request pays for each level (seen in the hot-path profile).
    for router in PROTECTED_ROUTERS:
        app.include_router(router, dependencies=[Depends(get_current_user)])
    for router in ADMIN_ROUTERS:
        app.include_router(router, dependencies=[Depends(get_current_user), require_roles(Role.admin)])
    for router in PUBLIC_ROUTERS:
        app.include_router(router)
