"""HTTP routes of the auth domain: sign-up, login, token rotation, logout and sessions."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, status
from fastapi.exceptions import RequestValidationError
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import ValidationError

from userapi.auth.dependencies import AuthServiceDep, ClientDep, CurrentClaims
from userapi.auth.schemas import LoginRequest, RefreshRequest, SessionRead, TokenPair
from userapi.core.config import API_PREFIX
from userapi.users.models import User
from userapi.users.schemas import UserRead, UserRegister

# Routers carry their full prefix, so a route knows its whole path template (metrics, logs).
public_router = APIRouter(prefix=f"{API_PREFIX}/auth", tags=["auth"])
router = APIRouter(prefix=API_PREFIX, tags=["auth"])

_unauthorized: dict[int | str, dict[str, Any]] = {
    401: {"description": "Incorrect credentials"},
    429: {"description": "Throttled"},
}


@public_router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserRead,
    responses={409: {"description": "Email taken"}, 429: {"description": "Throttled"}},
)
async def register(body: UserRegister, auth: AuthServiceDep, client: ClientDep) -> User:
    user = await auth.register(body.email, body.password, body.full_name, client)
    return user


@public_router.post("/login", response_model=TokenPair, responses=_unauthorized)
async def login(body: LoginRequest, auth: AuthServiceDep, client: ClientDep) -> TokenPair:
    return await auth.login(body.email, body.password, client)


@public_router.post("/token", response_model=TokenPair, responses=_unauthorized)
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    auth: AuthServiceDep,
    client: ClientDep,
) -> TokenPair:
    """The login as an OAuth2 password form, so the Authorize button of /docs works."""
    try:  # the same rules as the JSON login (no NUL, valid Unicode, bounded)
        body = LoginRequest(email=form.username, password=form.password)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_input=False)) from None
    return await auth.login(body.email, body.password, client)


@public_router.post(
    "/refresh", response_model=TokenPair, responses={401: {"description": "Invalid refresh token"}}
)
async def refresh(body: RefreshRequest, auth: AuthServiceDep, client: ClientDep) -> TokenPair:
    return await auth.refresh(body.refresh_token, client)


@public_router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(body: RefreshRequest, auth: AuthServiceDep, client: ClientDep) -> None:
    await auth.logout(body.refresh_token, client)


@router.get("/auth/sessions", response_model=list[SessionRead])
async def list_sessions(current: CurrentClaims, auth: AuthServiceDep) -> list[SessionRead]:
    user, claims = current
    return [
        SessionRead(
            id=row.family_id,
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            expires_at=row.expires_at,
            user_agent=row.user_agent,
            ip=row.ip,
            current=row.family_id == claims.session_id,
        )
        for row in await auth.sessions(user)
    ]


@router.delete(
    "/auth/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"description": "No such session of yours"}},
)
async def end_session(
    session_id: uuid.UUID, current: CurrentClaims, auth: AuthServiceDep, client: ClientDep
) -> None:
    await auth.end_session(current[0], session_id, client)
