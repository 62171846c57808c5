"""HTTP routes of the auth domain: sign-up, login, token rotation, logout and sessions."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Response, status

from userapi.auth.dependencies import AuthServiceDep, CurrentClaims, PasswordGrantDep
from userapi.auth.schemas import (
    LoginRequest,
    MfaRequired,
    MfaVerifyRequest,
    PasswordGrantForm,
    RefreshRequest,
    SessionRead,
    TokenPair,
)
from userapi.core.client import ClientDep
from userapi.core.config import API_PREFIX
from userapi.core.http import NoStore
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


@public_router.post(
    "/login",
    response_model=TokenPair | MfaRequired,
    dependencies=[NoStore],
    responses={
        **_unauthorized,
        202: {"model": MfaRequired, "description": "Right password; a second factor is due"},
    },
)
async def login(
    body: LoginRequest, auth: AuthServiceDep, client: ClientDep, response: Response
) -> TokenPair | MfaRequired:
    """A token pair or, for an account with TOTP on, 202 and an mfa_token for POST /auth/mfa/verify."""
    result = await auth.login(body.email, body.password, client)
    if isinstance(result, MfaRequired):
        response.status_code = status.HTTP_202_ACCEPTED
    return result


@public_router.post(
    "/mfa/verify",
    response_model=TokenPair,
    dependencies=[NoStore],
    responses={401: {"description": "invalid_code or invalid_mfa_token"}, 429: {"description": "Throttled"}},
)
async def verify_mfa(body: MfaVerifyRequest, auth: AuthServiceDep, client: ClientDep) -> TokenPair:
    """The second step of sign-in: `{mfa_token, code}` or `{mfa_token, recovery_code}` → the token pair."""
    return await auth.verify_mfa(body.mfa_token, body.code, body.recovery_code, client)


@public_router.post(
    "/token",
    response_model=TokenPair,
    dependencies=[NoStore],
    responses={
        400: {
            "description": "RFC 6749 5.2: `error` (also the problem's `code`) is `invalid_grant` for "
            "wrong credentials, `invalid_request` for a missing, repeated or malformed parameter or "
            "a body that is not a form, `unsupported_grant_type` for a grant_type other than password"
        },
        429: {"description": "Throttled"},
    },
    openapi_extra={
        "x-oauth2-token-endpoint": True,
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {"schema": PasswordGrantForm.model_json_schema()}
            },
        },
    },
)
async def token(grant: PasswordGrantDep, auth: AuthServiceDep, client: ClientDep) -> TokenPair:
    """The OAuth 2.0 token endpoint, resource owner password grant (RFC 6749 4.3); /docs' Authorize uses it.

    Its errors are RFC 6749 5.2 errors (400 `invalid_grant`, ...) carried as problem documents.
    Not for accounts with a second factor (400 `invalid_grant`): Swagger's Authorize cannot do MFA.
    """
    return await auth.password_grant(grant.email, grant.password, client)


@public_router.post(
    "/refresh",
    response_model=TokenPair,
    dependencies=[NoStore],
    responses={401: {"description": "Invalid refresh token"}},
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
            amr=row.amr,
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
