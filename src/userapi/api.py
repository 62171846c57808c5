"""Router composition: public routes, and protected routes that require a signed-in user by default."""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI

from userapi import health
from userapi.auth.dependencies import get_current_user
from userapi.auth.router import public_router as auth_public
from userapi.auth.router import router as auth_protected
from userapi.users.router import router as users_router

# Routes anyone may call.
PUBLIC_ROUTERS: tuple[APIRouter, ...] = (health.router, auth_public)
# Everything else: each of these routers is included with the signed-in-user requirement
# (deny by default; tests/auth/test_rbac.py walks every route to prove it).
PROTECTED_ROUTERS: tuple[APIRouter, ...] = (users_router, auth_protected)


def include_routes(app: FastAPI) -> None:
    # Included directly, not through an umbrella router: FastAPI matches nested included routers
    # level by level, and every request pays for each level (seen in the hot-path profile).
    for router in PROTECTED_ROUTERS:
        app.include_router(router, dependencies=[Depends(get_current_user)])
    for router in PUBLIC_ROUTERS:
        app.include_router(router)
