"""Builds auth services per request and guards routes: current user, roles, client address."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from pydantic import ValidationError

from userapi.audit.dependencies import AuditServiceDep
from userapi.auth.exceptions import InvalidRequest, UnsupportedGrantType
from userapi.auth.repository import AuthRepository
from userapi.auth.schemas import LoginRequest
from userapi.auth.service import Authenticator, AuthService, SessionRevoker
from userapi.core.clock import ClockDep
from userapi.core.exceptions import PermissionDenied, Unauthenticated
from userapi.core.runtime import RuntimeDep
from userapi.core.security import AccessClaims
from userapi.db.session import SessionDep
from userapi.guard.dependencies import SecretGuardDep
from userapi.mfa.service import MfaService
from userapi.users.constants import Role
from userapi.users.models import User
from userapi.users.service import UserService

# auto_error=False: a missing token becomes our own 401 problem document.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)

# The dependencies below are `async def` even when they do not await: FastAPI runs plain `def`
# dependencies in a worker thread, a costly hop on every request.


async def get_sessions(session: SessionDep) -> SessionRevoker:
    """Auth's side of "end every session of a user", handed to the users service."""
    return SessionRevoker.for_session(session)


SessionsDep = Annotated[SessionRevoker, Depends(get_sessions)]


async def get_mfa_service(
    session: SessionDep,
    runtime: RuntimeDep,
    sessions: SessionsDep,
    audit: AuditServiceDep,
    guard: SecretGuardDep,
    clock: ClockDep,
) -> MfaService:
    """The mfa service (here, not in mfa.dependencies: sign-in needs it as its second factor, and
    mfa's web layer imports this module)."""
    users = UserService.for_session(session, runtime.hasher, sessions, audit)
    return MfaService.for_session(
        session, users, sessions, audit, runtime.hasher, guard, runtime.settings, clock
    )


MfaServiceDep = Annotated[MfaService, Depends(get_mfa_service)]


async def get_auth_service(
    session: SessionDep,
    runtime: RuntimeDep,
    sessions: SessionsDep,
    audit: AuditServiceDep,
    guard: SecretGuardDep,
    mfa: MfaServiceDep,
) -> AuthService:
    # The users service is built here, not taken from users.dependencies: that module takes
    # `SessionsDep` from this one, and the two must not import each other.
    users = mfa.users
    return AuthService(
        AuthRepository(session),
        users,
        audit,
        runtime.hasher,
        runtime.tokens,
        runtime.throttle,
        guard,
        runtime.settings,
        mfa,
    )


AuthServiceDep = Annotated[AuthService, Depends(get_auth_service)]

_FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
_GRANT_PARAMETERS = ("grant_type", "username", "password", "scope")


async def get_password_grant(request: Request) -> LoginRequest:
    """The credentials of a token request, checked as RFC 6749 asks (4.3.2, 3.2, 5.2).

    Read from the form here rather than declared as FastAPI form fields, so that every malformed
    request is the RFC's 400 `invalid_request` and never a 422. Raises InvalidRequest (not a
    form, a parameter missing, repeated or malformed), UnsupportedGrantType.
    """
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != _FORM_MEDIA_TYPE:
        raise InvalidRequest(f"Send the token request as {_FORM_MEDIA_TYPE}")
    form = await request.form()
    for name in _GRANT_PARAMETERS:
        if len(form.getlist(name)) > 1:
            raise InvalidRequest(f"The {name} parameter is repeated")
    values = {name: form.get(name) for name in _GRANT_PARAMETERS}
    if not values["grant_type"]:
        raise InvalidRequest("The grant_type parameter is missing")
    if values["grant_type"] != "password":
        raise UnsupportedGrantType("This endpoint grants tokens for grant_type=password only")
    for name in ("username", "password"):
        if not isinstance(values[name], str) or not values[name]:
            raise InvalidRequest(f"The {name} parameter is missing")
    try:  # the JSON login's rules: no NUL, valid Unicode, bounded lengths
        return LoginRequest(email=values["username"], password=values["password"])
    except ValidationError as exc:
        error = exc.errors(include_input=False)[0]
        name = "username" if error["loc"][0] == "email" else "password"
        reason = str(error["msg"]).removeprefix("Value error, ")
        raise InvalidRequest(f"The {name} parameter is not valid: {reason}") from None


PasswordGrantDep = Annotated[LoginRequest, Depends(get_password_grant)]


async def get_current_claims(
    runtime: RuntimeDep, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> tuple[User, AccessClaims]:
    # Deliberately no session or service here: this runs on every authenticated request.
    if not token:
        raise Unauthenticated("Sign in: send an access token as `Authorization: Bearer <token>`")
    return await Authenticator.on(runtime.tokens, runtime.reads).authenticate(token)


async def get_current_user(
    current: Annotated[tuple[User, AccessClaims], Depends(get_current_claims)],
) -> User:
    return current[0]


CurrentUser = Annotated[User, Depends(get_current_user)]
CurrentClaims = Annotated[tuple[User, AccessClaims], Depends(get_current_claims)]


def require_roles(*roles: Role) -> Any:
    """Route guard: the stored role of the signed-in user must be one of `roles` (else 403)."""
    allowed = frozenset(roles)

    async def guard(user: CurrentUser) -> User:
        if user.role not in allowed:
            raise PermissionDenied("Your role does not allow this")
        return user

    return Depends(guard)


AdminUser = Annotated[User, require_roles(Role.admin)]
