"""HTTP routes of the auth domain: sign-up, login, token rotation, logout, sessions, mailed-link flows."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response, status

from userapi.auth.dependencies import (
    AuthServiceDep,
    CurrentPrincipal,
    CurrentUser,
    OptionalClaims,
    PasswordGrantDep,
    Principal,
    RecoveryServiceDep,
)
from userapi.auth.repository import SessionRow
from userapi.auth.schemas import (
    AccountTokenBody,
    ForgotPassword,
    LoginRequest,
    MfaRequired,
    MfaVerifyRequest,
    PasswordGrantForm,
    RefreshRequest,
    ResetPassword,
    SessionRead,
    TokenPair,
)
from userapi.core.client import ClientDep
from userapi.core.config import API_PREFIX
from userapi.core.http import NoStore
from userapi.core.schemas import Accepted
from userapi.roles.constants import Permission
from userapi.roles.dependencies import require_permission
from userapi.roles.service import Actor
from userapi.users.dependencies import TargetUser, UserServiceDep
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
    summary="Create an account",
)
async def register(body: UserRegister, auth: AuthServiceDep, client: ClientDep) -> User:
    """Creates an account with the role `user` from an email, a password and an optional full name.
    The email is stored in its normalised form and is unique in any letter case (409 `email_taken`);
    the password needs 8 characters or more and must not be one of the most common passwords (422).
    Sign-ups are throttled per client address (429 with `Retry-After`). Then sign in with
    `POST /api/v1/auth/login`."""
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
    summary="Sign in",
)
async def login(
    body: LoginRequest, auth: AuthServiceDep, client: ClientDep, response: Response
) -> TokenPair | MfaRequired:
    """Checks an email and password and opens a session: a short-lived JWT access token (send it as
    `Authorization: Bearer <token>`; `expires_in` seconds) and an opaque refresh token for
    `POST /api/v1/auth/refresh`. For an account with TOTP on, the answer is instead 202 with an
    `mfa_token` for `POST /api/v1/auth/mfa/verify`. An unknown email, a wrong password and a
    deactivated account get the same 401. Attempts are throttled per account and per client address
    (429 with `Retry-After`)."""
    result = await auth.login(body.email, body.password, client)
    if isinstance(result, MfaRequired):
        response.status_code = status.HTTP_202_ACCEPTED
    return result


@public_router.post(
    "/mfa/verify",
    response_model=TokenPair,
    dependencies=[NoStore],
    responses={401: {"description": "invalid_code or invalid_mfa_token"}, 429: {"description": "Throttled"}},
    summary="Complete sign-in with a second factor",
)
async def verify_mfa(body: MfaVerifyRequest, auth: AuthServiceDep, client: ClientDep) -> TokenPair:
    """The second step of sign-in: `{mfa_token, code}` (a TOTP code) or `{mfa_token, recovery_code}`
    gives the token pair. The mfa_token comes from a 202 of `POST /api/v1/auth/login`."""
    return await auth.verify_mfa(body.mfa_token, body.code, body.recovery_code, client)


@public_router.post(
    "/token",
    response_model=TokenPair,
    dependencies=[NoStore],
    summary="Sign in (OAuth 2.0 password grant)",
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
    """The sign-in of `POST /api/v1/auth/login` as an OAuth 2.0 token endpoint (RFC 6749 section 4.3):
    a form (`application/x-www-form-urlencoded`) with `grant_type=password`, `username` (the email)
    and `password`. The same rules, throttling and tokens as the JSON sign-in; its errors are RFC 6749
    5.2 errors (400 `invalid_grant`, `invalid_request`, `unsupported_grant_type`) carried as problem
    documents. The Authorize button of these docs signs in through it. Not for accounts with a second
    factor (400 `invalid_grant`): the password grant cannot carry one."""
    return await auth.password_grant(grant.email, grant.password, client)


@public_router.post(
    "/refresh",
    response_model=TokenPair,
    dependencies=[NoStore],
    responses={401: {"description": "Invalid refresh token"}},
    summary="Get new tokens with a refresh token",
)
async def refresh(body: RefreshRequest, auth: AuthServiceDep, client: ClientDep) -> TokenPair:
    """Exchanges a refresh token for a new access token and a new refresh token (rotation: the one
    sent stops working). A refresh token presented again after the reuse interval is taken as
    stolen: its whole session is revoked and the call gets 401. Within the interval (two tabs
    refreshing at once) it gets a valid pair of the same session. Expired, revoked or unknown
    tokens, and tokens of deactivated accounts, get 401."""
    return await auth.refresh(body.refresh_token, client)


@public_router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, summary="Sign out")
async def logout(body: RefreshRequest, auth: AuthServiceDep, client: ClientDep) -> None:
    """Ends the session of the refresh token sent: its refresh tokens and access tokens stop
    working. Idempotent: an unknown or already ended token also gets 204."""
    await auth.logout(body.refresh_token, client)


def _session_list(rows: list[SessionRow], current: uuid.UUID | None) -> list[SessionRead]:
    return [
        SessionRead(
            id=row.family_id,
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            expires_at=row.expires_at,
            user_agent=row.user_agent,
            ip=row.ip,
            amr=row.amr,
            current=row.family_id == current,
        )
        for row in rows
    ]


@router.get("/auth/sessions", response_model=list[SessionRead], summary="List your active sessions")
async def list_sessions(current: CurrentPrincipal, auth: AuthServiceDep) -> list[SessionRead]:
    """The caller's signed-in sessions that have not ended or expired: when each began and was last
    used, from which user agent and address; `current` marks the session of this access token."""
    return _session_list(await auth.sessions(current.user), current.claims.session_id)


SessionReader = Annotated[Principal, require_permission(Permission.users_read)]
SessionEnder = Annotated[Principal, require_permission(Permission.sessions_revoke)]
_no_user: dict[int | str, dict[str, Any]] = {404: {"description": "No such user"}}


@router.get(
    "/users/{user_id}/sessions",
    response_model=list[SessionRead],
    responses=_no_user,
    summary="List a user's active sessions (users:read)",
)
async def list_user_sessions(
    caller: SessionReader, target: TargetUser, auth: AuthServiceDep
) -> list[SessionRead]:
    """Another account's signed-in sessions, as `GET /api/v1/auth/sessions` shows them to their owner
    (`current` is false: none of them is the caller's). Needs `users:read`."""
    return _session_list(await auth.sessions(target), None)


@router.delete(
    "/users/{user_id}/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"description": "No such user, or no active session of that id of theirs"}},
    summary="End one session of a user (sessions:revoke)",
)
async def end_user_session(
    caller: SessionEnder,
    target: TargetUser,
    session_id: Annotated[
        uuid.UUID, Path(description="The session's `id`, from the user's list of sessions.")
    ],
    users: UserServiceDep,
    client: ClientDep,
) -> None:
    """Signs the account out of one session (a lost phone): its refresh token is revoked and its
    access tokens stop on their next request. Needs `sessions:revoke` and every permission of the
    account's role. Recorded in the audit trail."""
    actor = Actor.signed_in(caller.user.id, caller.permissions, client)
    await users.admin_end_session(actor, target, session_id)


@router.delete(
    "/auth/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"description": "No such session of yours"}},
    summary="End one of your sessions",
)
async def end_session(
    session_id: Annotated[uuid.UUID, Path(description="The session's `id`, from the list of sessions.")],
    current: CurrentPrincipal,
    auth: AuthServiceDep,
    client: ClientDep,
) -> None:
    """Signs out one of the caller's sessions (say, a lost phone): its refresh and access tokens stop
    working. 404 when the id is not a session of the caller."""
    await auth.end_session(current.user, session_id, client)


# --- account recovery and verified addresses (links mailed through the outbox) ---------------

_FORGOT_ACCEPTED = (
    "If an active account has this address, a link to reset its password is on its way. "
    "It works once, for a limited time."
)
_token_errors: dict[int | str, dict[str, Any]] = {
    400: {"description": "`invalid_token`: unknown, spent, superseded or expired link"},
    429: {"description": "Throttled (per client IP)"},
}
_mail_errors: dict[int | str, dict[str, Any]] = {
    429: {"description": "Throttled (per address and per client IP)"},
    503: {"description": "`mail_unavailable`: this service runs with MAIL_DELIVERY=off"},
}


@public_router.post(
    "/password/forgot",
    summary="Ask for a password-reset link",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    responses=_mail_errors,
)
async def forgot_password(body: ForgotPassword, recovery: RecoveryServiceDep, client: ClientDep) -> Accepted:
    """Mail a password-reset link. The same answer, in about the same time, whether or not an
    account has the address (no enumeration)."""
    await recovery.forgot_password(body.email, client)
    return Accepted(detail=_FORGOT_ACCEPTED)


@public_router.post(
    "/password/reset",
    summary="Set a new password with a reset link",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**_token_errors, 422: {"description": "Refused password"}},
)
async def reset_password(body: ResetPassword, recovery: RecoveryServiceDep, client: ClientDep) -> None:
    """Set a new password with a reset token; every session of the account ends."""
    await recovery.reset_password(body.token, body.new_password, client)


@public_router.post(
    "/email/verify",
    summary="Verify my email address with its link",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_token_errors,
)
async def verify_email(body: AccountTokenBody, recovery: RecoveryServiceDep, client: ClientDep) -> None:
    """Mark the account's address verified with a verification token."""
    await recovery.verify_email(body.token, client)


@public_router.post(
    "/email/change/confirm",
    summary="Confirm an email address change",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**_token_errors, 409: {"description": "The address was taken meanwhile"}},
)
async def confirm_email_change(
    body: AccountTokenBody, recovery: RecoveryServiceDep, client: ClientDep, claims: OptionalClaims
) -> None:
    """Change the address with a change token. Every other session ends (the caller's own, when
    it sends its access token, stays)."""
    await recovery.confirm_email_change(body.token, client, claims.session_id if claims else None)


@router.post(
    "/auth/email/verify/resend",
    summary="Send a new verification link",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    responses={**_mail_errors, 409: {"description": "`email_already_verified`"}},
)
async def resend_verification(user: CurrentUser, recovery: RecoveryServiceDep, client: ClientDep) -> Accepted:
    """Mail a new verification link; the previous one stops working."""
    await recovery.resend_verification(user, client)
    return Accepted(detail=f"A new verification link is on its way to {user.email}.")
