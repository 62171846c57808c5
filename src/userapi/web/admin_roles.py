"""The admin console's roles and audit-trail pages (/admin/roles, /admin/audit); `admin` has the rest.

As everywhere in the console: the permission of the API route first, then the same service call.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from starlette.responses import Response

from userapi.audit.constants import EventType
from userapi.audit.dependencies import AuditServiceDep
from userapi.core.pagination import CursorParam
from userapi.core.validation import StorableText
from userapi.roles.constants import Permission
from userapi.roles.dependencies import RoleServiceDep
from userapi.roles.schemas import RoleDescription, RoleName
from userapi.users.dependencies import UserServiceDep
from userapi.web import constants as c
from userapi.web.admin import Form_, console_page
from userapi.web.dependencies import AdminConsole
from userapi.web.pages import PageRoute, back_to, flash, redirect, require_fields

router = APIRouter(prefix=c.ADMIN, route_class=PageRoute, include_in_schema=False)


# --- roles -----------------------------------------------------------------------------------------


@router.get("/roles")
async def rolesconsole_page(request: Request, console: AdminConsole, roles: RoleServiceDep) -> Response:
    """Every role with its permissions and holders, and a form for a new one (roles:manage)."""
    console.require(Permission.roles_manage)
    return console_page(
        request,
        console,
        "admin/roles.html",
        "roles",
        roles=await roles.all_roles(),
        catalogue=roles.catalogue(),
    )


@router.post("/roles", dependencies=[back_to(c.ADMIN + "/roles"), Form_])
async def create_role(
    request: Request,
    console: AdminConsole,
    roles: RoleServiceDep,
    name: Annotated[RoleName, Form()],
    description: Annotated[RoleDescription, Form()] = "",
    permissions: Annotated[list[Permission], Form(max_length=4 * len(Permission))] = [],  # noqa: B006
) -> Response:
    """POST /api/v1/roles (roles:manage)."""
    console.require(Permission.roles_manage)
    await roles.create(console.actor, name, description, permissions)
    flash(request, f"The role {name} is created.")
    return redirect(request, f"{c.ADMIN}/roles/{name}")


@router.get("/roles/{name}")
async def role_page(
    request: Request, name: RoleName, console: AdminConsole, roles: RoleServiceDep
) -> Response:
    """One role, with a form to change it (custom roles) (roles:manage)."""
    console.require(Permission.roles_manage)
    return console_page(
        request, console, "admin/role.html", "roles", role=await roles.get(name), catalogue=roles.catalogue()
    )


@router.post("/roles/{name}", dependencies=[back_to(c.ADMIN + "/roles/{name}"), Form_])
async def update_role(
    request: Request,
    name: RoleName,
    console: AdminConsole,
    roles: RoleServiceDep,
    description: Annotated[RoleDescription, Form()] = "",
    permissions: Annotated[list[Permission], Form(max_length=4 * len(Permission))] = [],  # noqa: B006
) -> Response:
    """PATCH /api/v1/roles/{name} with the whole new set of permissions (roles:manage)."""
    # Unticked boxes send nothing, so no permission field means "no permission". A form without
    # the description field, though, is no form of ours: it would blank the description.
    await require_fields(request, "description")
    console.require(Permission.roles_manage)
    await roles.update(
        console.actor,
        name,
        description=description,
        permissions=permissions,
        fields={"description", "permissions"},
    )
    flash(request, f"The role {name} is saved.")
    return redirect(request, f"{c.ADMIN}/roles/{name}")


@router.post("/roles/{name}/delete", dependencies=[back_to(c.ADMIN + "/roles/{name}"), Form_])
async def delete_role(
    request: Request, name: RoleName, console: AdminConsole, roles: RoleServiceDep
) -> Response:
    """DELETE /api/v1/roles/{name} (roles:manage)."""
    console.require(Permission.roles_manage)
    await roles.delete(console.actor, name)
    flash(request, f"The role {name} is deleted.")
    return redirect(request, f"{c.ADMIN}/roles")


# --- audit trail -----------------------------------------------------------------------------------


@router.get("/audit")
async def audit_page(
    request: Request,
    console: AdminConsole,
    audit: AuditServiceDep,
    users: UserServiceDep,
    type: Annotated[EventType | Literal[""], Query()] = "",
    user: Annotated[StorableText, Query(max_length=320)] = "",
    cursor: CursorParam = None,
) -> Response:
    """The audit trail, newest first, filtered by type and by user (id or email) (audit:read)."""
    console.require(Permission.audit_read)
    user_id = await _user_filter(user, users) if user else None
    if user and user_id is None:
        events: list[object] = []
        next_cursor = None
    else:
        rows, next_cursor = await audit.page(c.PAGE_SIZE, cursor, user_id, type or None)
        events = list(rows)
    filters = {k: v for k, v in {"type": type, "user": user}.items() if v}
    next_url = f"?{urlencode({**filters, 'cursor': next_cursor})}" if next_cursor else None
    return console_page(
        request,
        console,
        "admin/audit.html",
        "audit",
        events=events,
        types=[t.value for t in EventType],
        type=type,
        user=user,
        next_url=next_url,
        first_url=f"?{urlencode(filters)}" if cursor else None,
    )


async def _user_filter(text: str, users: UserServiceDep) -> uuid.UUID | None:
    """A user id, or the id of the account with that email (None when there is none)."""
    try:
        return uuid.UUID(text.strip())
    except ValueError:
        account = await users.get_by_email(text)
        return account.id if account else None
