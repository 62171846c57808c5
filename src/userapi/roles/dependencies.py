"""The permission guard of every admin route (`require_permission`), and the roles service per request."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends

from userapi.audit.dependencies import AuditServiceDep
from userapi.auth.dependencies import CurrentPrincipal, Principal
from userapi.db.session import SessionDep
from userapi.roles import constants
from userapi.roles.exceptions import MissingPermission
from userapi.roles.service import RoleService
from userapi.users.service import UserRoleHolders

# `async def` even when nothing is awaited: FastAPI runs plain `def` dependencies in a worker thread.


async def get_role_service(session: SessionDep, audit: AuditServiceDep) -> RoleService:
    # The accounts holding roles are counted and locked by users (roles never imports users' rules).
    return RoleService.for_session(session, UserRoleHolders.for_session(session), audit)


RoleServiceDep = Annotated[RoleService, Depends(get_role_service)]


def require_permission(permission: str) -> Any:
    """Route guard: the signed-in caller's role must grant `permission` (else 403 with
    `missing_permissions`); 401 without a valid token. The permissions are the role's stored ones,
    read on this very request (a change acts on the next request; the token's copy is not used).

    Use as `caller: Annotated[Principal, require_permission(Permission.users_read)]`, or in a
    router's `dependencies=[...]`. Raises ValueError at import time for a name the catalogue lacks.
    """
    if permission not in constants.ALL_PERMISSIONS:
        raise ValueError(f"{permission!r} is not in the permission catalogue")

    async def guard(principal: CurrentPrincipal) -> Principal:
        if permission not in principal.permissions:
            raise MissingPermission({permission}, f"This needs the permission {permission}")
        return principal

    # Read by the route walk in the tests (every admin route declares exactly what it needs).
    guard.required_permission = permission  # type: ignore[attr-defined]
    return Depends(guard)
