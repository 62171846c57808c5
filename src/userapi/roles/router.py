"""HTTP routes of the roles domain: the permission catalogue and roles (all need `roles:manage`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, status

from userapi.auth.dependencies import Principal
from userapi.core.client import ClientDep
from userapi.core.config import API_PREFIX
from userapi.roles.constants import Permission
from userapi.roles.dependencies import RoleServiceDep, require_permission
from userapi.roles.schemas import PermissionRead, RoleCreate, RoleName, RoleRead, RoleUpdate
from userapi.roles.service import Actor, RoleView

# Routers carry their full prefix, so a route knows its whole path template (metrics, logs).
router = APIRouter(prefix=API_PREFIX, tags=["roles"])
Manager = Annotated[Principal, require_permission(Permission.roles_manage)]
NamePath = Annotated[RoleName, Path(description="The role's name.")]

_not_found: dict[int | str, dict[str, Any]] = {404: {"description": "No such role"}}


def _actor(caller: Principal, client: ClientDep) -> Actor:
    return Actor.signed_in(caller.user.id, caller.permissions, client)


@router.get("/permissions", response_model=list[PermissionRead], summary="List the permission catalogue")
async def list_permissions(caller: Manager, roles: RoleServiceDep) -> list[dict[str, str]]:
    """Every permission a role can grant, with its stable name and what it allows. The catalogue is
    defined by the service's code; the built-in `admin` role holds all of it, including permissions
    added in later versions. Needs `roles:manage`."""
    return [{"name": name, "description": text} for name, text in roles.catalogue()]


@router.get("/roles", response_model=list[RoleRead], summary="List roles")
async def list_roles(caller: Manager, roles: RoleServiceDep) -> list[RoleView]:
    """Every role, by name: the built-in `user` and `admin` and the custom ones, each with its
    permissions and how many accounts (active or not) hold it. Needs `roles:manage`."""
    return await roles.all_roles()


@router.post(
    "/roles",
    status_code=status.HTTP_201_CREATED,
    response_model=RoleRead,
    responses={409: {"description": "`role_name_taken`"}},
    summary="Create a role",
)
async def create_role(
    body: RoleCreate, caller: Manager, roles: RoleServiceDep, client: ClientDep
) -> RoleView:
    """A custom role with a name (lower-case letters, digits, `_` and `-`, starting with a letter; 2
    to 63 characters), a description and permissions from the catalogue (422 for any other name).
    Granting a permission needs holding it (403 otherwise); 409 when the name is taken. Recorded
    in the audit trail. Needs `roles:manage`."""
    return await roles.create(_actor(caller, client), body.name, body.description, body.permissions)


@router.get("/roles/{name}", response_model=RoleRead, responses=_not_found, summary="Read a role")
async def read_role(name: NamePath, caller: Manager, roles: RoleServiceDep) -> RoleView:
    """One role with its permissions and holders; 404 when no role has that name. Needs
    `roles:manage`."""
    return await roles.get(name)


@router.patch(
    "/roles/{name}",
    response_model=RoleRead,
    responses={
        **_not_found,
        409: {"description": "`built_in_role`, or `last_admin`: no active admin would be left"},
    },
    summary="Change a role's description or permissions",
)
async def update_role(
    name: NamePath, body: RoleUpdate, caller: Manager, roles: RoleServiceDep, client: ClientDep
) -> RoleView:
    """Changes the members sent (`description`; `permissions`, the whole new set); the others stay.
    Every account holding the role gets the new permissions on its very next request, with the
    access token it has. Built-in roles cannot be changed (409 `built_in_role`); a change that
    would leave no active account with `roles:manage` and `users:manage-roles` is 409
    `last_admin`; granting a permission needs holding it (403). Recorded in the audit trail.
    Needs `roles:manage`."""
    return await roles.update(
        _actor(caller, client),
        name,
        description=body.description,
        permissions=body.permissions,
        fields=body.model_fields_set,
    )


@router.delete(
    "/roles/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        **_not_found,
        409: {"description": "`built_in_role`, or `role_in_use` while accounts hold it"},
    },
    summary="Delete a role",
)
async def delete_role(name: NamePath, caller: Manager, roles: RoleServiceDep, client: ClientDep) -> None:
    """Deletes a custom role nobody holds: 409 `role_in_use` while accounts (active or not) hold
    it, 409 `built_in_role` for `user` and `admin`. Recorded in the audit trail. Needs
    `roles:manage`."""
    await roles.delete(_actor(caller, client), name)
