"""Builds auth services per request and tells who is calling: the principal (user, claims, permissions)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from pydantic import ValidationError

from userapi.audit.dependencies import AuditServiceDep
from userapi.auth.account_tokens import AccountTokens
from userapi.auth.exceptions import InvalidRequest, UnsupportedGrantType
from userapi.auth.recovery import RecoveryService
from userapi.auth.repository import AccountTokenRepository, AuthRepository
from userapi.auth.schemas import LoginRequest
from userapi.auth.service import Authenticator, AuthService, SessionRevoker
from userapi.auth.service import Principal as Principal  # re-exported: the web layers' type of the caller
from userapi.core.clock import ClockDep
from userapi.core.exceptions import InvalidToken, Unauthenticated
from userapi.core.runtime import Runtime, RuntimeDep
from userapi.core.security import AccessClaims
from userapi.db.session import SessionDep
from userapi.guard.dependencies import SecretGuardDep
from userapi.mail.dependencies import MailServiceDep
from userapi.mfa.service import MfaService
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


async def get_users(
    session: SessionDep, runtime: RuntimeDep, sessions: SessionsDep, audit: AuditServiceDep
) -> UserService:
    """The users service of this request, one for every auth service that needs it. Built here,
    not taken from users.dependencies: that module takes `SessionsDep` from this one, and the two
    must not import each other."""
    return UserService.for_session(session, runtime.hasher, sessions, audit)


UsersDep = Annotated[UserService, Depends(get_users)]


async def get_mfa_service(
    session: SessionDep,
    runtime: RuntimeDep,
    users: UsersDep,
    sessions: SessionsDep,
    audit: AuditServiceDep,
    guard: SecretGuardDep,
    clock: ClockDep,
) -> MfaService:
    """The mfa service (here, not in mfa.dependencies: sign-in needs it as its second factor, and
    mfa's web layer imports this module)."""
    return MfaService.for_session(
        session, users, sessions, audit, runtime.hasher, guard, runtime.settings, clock
    )


MfaServiceDep = Annotated[MfaService, Depends(get_mfa_service)]


async def get_recovery_service(
    session: SessionDep,
    runtime: RuntimeDep,
    users: UsersDep,
    sessions: SessionsDep,
    audit: AuditServiceDep,
    guard: SecretGuardDep,
    mail: MailServiceDep,
) -> RecoveryService:
    tokens = AccountTokens(AccountTokenRepository(session), guard, audit)
    return RecoveryService(
        tokens, users, sessions, mail, audit, guard, runtime.hasher, runtime.throttle, runtime.settings
    )


RecoveryServiceDep = Annotated[RecoveryService, Depends(get_recovery_service)]


async def get_auth_service(
    session: SessionDep,
    runtime: RuntimeDep,
    users: UsersDep,
    audit: AuditServiceDep,
    guard: SecretGuardDep,
    recovery: RecoveryServiceDep,
    mfa: MfaServiceDep,
) -> AuthService:
    return AuthService(
        AuthRepository(session),
        users,
        audit,
        runtime.hasher,
        runtime.tokens,
        runtime.throttle,
        guard,
        runtime.settings,
        recovery,
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


BearerToken = Annotated[str | None, Depends(oauth2_scheme)]

# Where the caller, once authenticated, is kept for the rest of its request (the ASGI scope is
# per request; nothing from outside can set a key in it).
_PRINCIPAL_KEY = "userapi.principal"


async def authenticate(runtime: Runtime, token: str | None) -> Principal:
    """The caller behind an access token: verified, then account, role permissions and session read
    in one query. Raises Unauthenticated (no token) or InvalidToken (401). For callers outside the
    dependency system (the web console's cookie session); routes use the dependencies below."""
    if not token:
        raise Unauthenticated("Sign in: send an access token as `Authorization: Bearer <token>`")
    return await Authenticator.on(runtime.tokens, runtime.reads).authenticate(token)


async def _principal(request: Request, runtime: Runtime, token: str | None) -> Principal:
    """Authenticate once per request, whichever of the dependencies below asks first."""
    principal: Principal | None = request.scope.get(_PRINCIPAL_KEY)
    if principal is None:
        principal = await authenticate(runtime, token)
        request.scope[_PRINCIPAL_KEY] = principal
    return principal


# The two dependencies below are siblings, not nested: every protected route resolves the
# router-level `get_current_user` and usually its own `CurrentUser` or `CurrentPrincipal` too, and
# FastAPI walks each declared dependency's whole tree again (its cache saves the call, not the
# walk). One level over the runtime and the bearer token is the least that still declares the
# OAuth2 scheme to the OpenAPI document and lets tests override the runtime. No session or
# service here: this runs on every authenticated request.


async def get_current_principal(request: Request, runtime: RuntimeDep, token: BearerToken) -> Principal:
    """The signed-in caller: token verified, then account, role permissions and session read in one
    query. Raises Unauthenticated (no token) or InvalidToken (401)."""
    return await _principal(request, runtime, token)


CurrentPrincipal = Annotated[Principal, Depends(get_current_principal)]


async def get_current_user(request: Request, runtime: RuntimeDep, token: BearerToken) -> User:
    """The signed-in caller's account (the same authentication as get_current_principal, done once)."""
    return (await _principal(request, runtime, token)).user


async def get_optional_claims(runtime: RuntimeDep, token: BearerToken) -> AccessClaims | None:
    """The caller's claims when a valid access token came along (public routes that can use it)."""
    if not token:
        return None
    try:
        return (await authenticate(runtime, token)).claims
    except InvalidToken:
        return None


OptionalClaims = Annotated[AccessClaims | None, Depends(get_optional_claims)]
CurrentUser = Annotated[User, Depends(get_current_user)]
