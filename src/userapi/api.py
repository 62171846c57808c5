"""Router composition: public routes, and protected routes that require a signed-in user by default."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from userapi import health
from userapi.auth.dependencies import get_current_user
from userapi.auth.router import public_router as auth_public
from userapi.auth.router import router as auth_protected
from userapi.users.router import router as users_router

# Routes anyone may call. Everything else sits behind protected_router (deny by default).
public_router = APIRouter()
public_router.include_router(health.router)
public_router.include_router(auth_public)

protected_router = APIRouter(dependencies=[Depends(get_current_user)])
protected_router.include_router(auth_protected)
protected_router.include_router(users_router)
