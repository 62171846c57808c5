"""Builds auth services per request and guards routes: current user, roles, client address."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from userapi.audit.dependencies import AuditServiceDep
from userapi.auth.repository import AuthRepository
from userapi.auth.service import Authenticator, AuthService, SessionRevoker
from userapi.core.client import ClientInfo, client_ip
from userapi.core.exceptions import PermissionDenied, Unauthenticated
from userapi.core.runtime import RuntimeDep
from userapi.core.security import AccessClaims
from userapi.db.session import SessionDep
from userapi.guard.dependencies import SecretGuardDep
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


async def get_auth_service(
    session: SessionDep,
    runtime: RuntimeDep,
    sessions: SessionsDep,
    audit: AuditServiceDep,
    guard: SecretGuardDep,
) -> AuthService:
    # The users service is built here, not taken from users.dependencies: that module takes
    # `SessionsDep` from this one, and the two must not import each other.
    users = UserService.for_session(session, runtime.hasher, sessions, audit)
    return AuthService(
        AuthRepository(session),
        users,
        audit,
        runtime.hasher,
        runtime.tokens,
        runtime.throttle,
        guard,
        runtime.settings,
    )


AuthServiceDep = Annotated[AuthService, Depends(get_auth_service)]


async def get_client(request: Request, runtime: RuntimeDep) -> ClientInfo:
    peer = request.client.host if request.client else "unknown"
    ip = client_ip(peer, request.headers.getlist("x-forwarded-for"), runtime.trusted_proxies)
    agent = request.headers.get("user-agent")
    return ClientInfo(ip=ip, user_agent=agent[:512] if agent else None)


ClientDep = Annotated[ClientInfo, Depends(get_client)]


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
