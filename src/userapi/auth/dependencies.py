"""Builds auth services per request and guards routes: current user, roles, client address."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from userapi.auth.repository import AuthRepository
from userapi.auth.service import Authenticator, AuthService, ClientInfo
from userapi.core.exceptions import PermissionDenied, Unauthenticated
from userapi.core.security import AccessClaims
from userapi.db.session import SessionDep
from userapi.users.constants import Role
from userapi.users.models import User
from userapi.users.repository import UserRepository
from userapi.users.service import UserService

# auto_error=False: a missing token becomes our own 401 problem document.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)

# The dependencies below are `async def` even when they do not await: FastAPI runs plain `def`
# dependencies in a worker thread, a costly hop on every request.


async def get_user_service(request: Request, session: SessionDep) -> UserService:
    return UserService(UserRepository(session), request.app.state.hasher)


UserServiceDep = Annotated[UserService, Depends(get_user_service)]


async def get_auth_service(request: Request, session: SessionDep, users: UserServiceDep) -> AuthService:
    state = request.app.state
    return AuthService(
        AuthRepository(session), users, state.hasher, state.tokens, state.throttle, state.settings
    )


AuthServiceDep = Annotated[AuthService, Depends(get_auth_service)]


def _parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def client_ip(request: Request) -> str:
    """The socket peer, or the X-Forwarded-For client when the peer is a trusted proxy."""
    peer = request.client.host if request.client else "unknown"
    trusted = request.app.state.trusted_proxies
    if not trusted or _parse_ip(peer) is None:
        return peer
    peer_ip = _parse_ip(peer)
    if not any(peer_ip in net for net in trusted):
        return peer
    # Walk right to left past our own proxies; the first untrusted hop is the client.
    hops = [h for h in ",".join(request.headers.getlist("x-forwarded-for")).split(",") if h.strip()]
    for hop in reversed(hops):
        hop_ip = _parse_ip(hop)
        if hop_ip is None:
            break
        if not any(hop_ip in net for net in trusted):
            return str(hop_ip)
    return peer


async def get_client(request: Request) -> ClientInfo:
    agent = request.headers.get("user-agent")
    return ClientInfo(ip=client_ip(request), user_agent=agent[:512] if agent else None)


ClientDep = Annotated[ClientInfo, Depends(get_client)]


async def get_current_claims(
    request: Request, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> tuple[User, AccessClaims]:
    # Deliberately no session or service here: this runs on every authenticated request.
    if not token:
        raise Unauthenticated("Sign in: send an access token as `Authorization: Bearer <token>`")
    authenticator: Authenticator = request.app.state.authenticator
    return await authenticator.authenticate(token)


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
