"""The admin console (/admin): sign-in, its sections, and the users pages (search, filters, changes).

Each page and form calls the service its API route calls, after the permission that route requires;
the services decide everything else (no escalation, the last admin, email taken, ...), and their
refusals reach the page as messages.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from starlette.responses import Response

from userapi.audit.dependencies import AuditServiceDep
from userapi.auth.dependencies import AuthServiceDep, MfaServiceDep
from userapi.core.pagination import CursorParam
from userapi.core.validation import StorableText
from userapi.roles.constants import Permission
from userapi.roles.dependencies import RoleServiceDep
from userapi.roles.schemas import RoleName
from userapi.users.dependencies import UserServiceDep
from userapi.web import constants as c
from userapi.web.dependencies import AdminConsole, Console, session_form
from userapi.web.exceptions import InvalidForm
from userapi.web.pages import PageRoute, back_to, flash, redirect, render
from userapi.web.signin import add_sign_in

router = APIRouter(prefix=c.ADMIN, route_class=PageRoute, include_in_schema=False)
add_sign_in(router, c.ADMIN, f"{c.ADMIN}", "Admin console")
Form_ = session_form(c.ADMIN)
USER_PAGE = c.ADMIN + "/users/{user_id}"

# Pages of the console, in the navigation's order, with the permission each needs.
SECTIONS = (
    ("users", "Users", Permission.users_read),
    ("roles", "Roles", Permission.roles_manage),
    ("audit", "Audit trail", Permission.audit_read),
)


def console_page(request: Request, console: Console, template: str, section: str, **context: Any) -> Response:
    """A console page: its navigation shows the sections the caller's role may see."""
    nav = [(name, label) for name, label, permission in SECTIONS if console.can(permission)]
    return render(request, template, console=console, nav=nav, section=section, area=c.ADMIN, **context)


@router.get("")
async def home(request: Request, console: AdminConsole) -> Response:
    """The first section the caller may see."""
    for name, _, permission in SECTIONS:
        if console.can(permission):
            return redirect(request, f"{c.ADMIN}/{name}")
    return console_page(request, console, "admin/home.html", "")


# --- users -----------------------------------------------------------------------------------------


@router.get("/users")
async def users_page(
    request: Request,
    console: AdminConsole,
    users: UserServiceDep,
    roles: RoleServiceDep,
    email: Annotated[StorableText | None, Query(max_length=320)] = None,
    role: Annotated[StorableText | None, Query(max_length=63)] = None,
    active: Annotated[Literal["", "yes", "no"], Query()] = "",
    cursor: CursorParam = None,
    limit: Annotated[int, Query(ge=1, le=100)] = c.PAGE_SIZE,
) -> Response:
    """Users in creation order, a keyset page at a time (GET /api/v1/users, users:read)."""
    console.require(Permission.users_read)
    is_active = {"yes": True, "no": False}.get(active)
    rows, next_cursor = await users.page(limit, cursor, role or None, email or None, is_active=is_active)
    filters = {k: v for k, v in {"email": email, "role": role, "active": active}.items() if v}
    if limit != c.PAGE_SIZE:
        filters["limit"] = str(limit)
    next_url = f"?{urlencode({**filters, 'cursor': next_cursor})}" if next_cursor else None
    first_url = f"?{urlencode(filters)}" if cursor else None
    role_names = await roles.names()
    return console_page(
        request,
        console,
        "admin/users.html",
        "users",
        users=rows,
        email=email or "",
        role=role or "",
        active=active,
        role_names=role_names,
        next_url=next_url,
        first_url=first_url,
    )


@router.get("/users/{user_id}")
async def user_page(
    request: Request,
    user_id: uuid.UUID,
    console: AdminConsole,
    users: UserServiceDep,
    auth: AuthServiceDep,
    audit: AuditServiceDep,
    roles: RoleServiceDep,
) -> Response:
    """One account: details, role, active state, sessions and recent audit events."""
    console.require(Permission.users_read)
    target = await users.get(user_id)
    sessions = await auth.sessions(target)
    events = None
    if console.can(Permission.audit_read):
        events, _ = await audit.page(c.RECENT_EVENTS, None, target.id, None)
    role_names = await roles.names()
    return console_page(
        request,
        console,
        "admin/user.html",
        "users",
        target=target,
        sessions=sessions,
        events=events,
        role_names=role_names,
        can=console.can,
        Permission=Permission,
    )


@router.post("/users/{user_id}/role", dependencies=[back_to(USER_PAGE), Form_])
async def change_role(
    request: Request,
    user_id: uuid.UUID,
    console: AdminConsole,
    users: UserServiceDep,
    role: Annotated[RoleName, Form()],
) -> Response:
    """PATCH /api/v1/users/{id} with a role (users:update; the service asks users:manage-roles)."""
    console.require(Permission.users_update)
    target = await users.get(user_id)
    await users.admin_update(console.actor, target, role=role, fields={"role"})
    flash(request, f"{target.email} now holds the role {role}.")
    return redirect(request, USER_PAGE.format(user_id=user_id))


@router.post("/users/{user_id}/active", dependencies=[back_to(USER_PAGE), Form_])
async def change_active(
    request: Request,
    user_id: uuid.UUID,
    console: AdminConsole,
    users: UserServiceDep,
    active: Annotated[bool, Form()],
) -> Response:
    """PATCH /api/v1/users/{id} with is_active (users:update): a deactivation ends every session."""
    console.require(Permission.users_update)
    target = await users.get(user_id)
    await users.admin_update(console.actor, target, is_active=active, fields={"is_active"})
    done = "reactivated" if active else "deactivated; every session of it has ended"
    flash(request, f"{target.email} is {done}.")
    return redirect(request, USER_PAGE.format(user_id=user_id))


@router.post("/users/{user_id}/sessions/end", dependencies=[back_to(USER_PAGE), Form_])
async def end_sessions(
    request: Request, user_id: uuid.UUID, console: AdminConsole, users: UserServiceDep
) -> Response:
    """DELETE /api/v1/users/{id}/sessions (sessions:revoke)."""
    console.require(Permission.sessions_revoke)
    target = await users.get(user_id)
    await users.admin_end_sessions(console.actor, target)
    flash(request, f"Every session of {target.email} has ended.")
    return redirect(request, USER_PAGE.format(user_id=user_id))


@router.post("/users/{user_id}/sessions/{session_id}/end", dependencies=[back_to(USER_PAGE), Form_])
async def end_one_session(
    request: Request, user_id: uuid.UUID, session_id: uuid.UUID, console: AdminConsole, users: UserServiceDep
) -> Response:
    """One session of the account (sessions:revoke), under the same no-escalation rule as ending all."""
    console.require(Permission.sessions_revoke)
    target = await users.get(user_id)
    await users.admin_end_session(console.actor, target, session_id)
    flash(request, f"The session of {target.email} has ended.")
    return redirect(request, USER_PAGE.format(user_id=user_id))


@router.post("/users/{user_id}/mfa/reset", dependencies=[back_to(USER_PAGE), Form_])
async def reset_mfa(
    request: Request, user_id: uuid.UUID, console: AdminConsole, users: UserServiceDep, mfa: MfaServiceDep
) -> Response:
    """DELETE /api/v1/users/{id}/mfa (mfa:reset): the second factor goes, every session ends."""
    console.require(Permission.mfa_reset)
    target = await users.get(user_id)
    if await mfa.reset(console.actor, target):
        flash(request, f"The second factor of {target.email} is removed and every session of it has ended.")
    else:
        flash(request, f"{target.email} had no second factor.")
    return redirect(request, USER_PAGE.format(user_id=user_id))


@router.get("/users/{user_id}/delete")
async def confirm_delete(
    request: Request, user_id: uuid.UUID, console: AdminConsole, users: UserServiceDep
) -> Response:
    """The confirmation, naming the account, before DELETE /api/v1/users/{id} (users:delete)."""
    console.require(Permission.users_delete)
    target = await users.get(user_id)
    return console_page(request, console, "admin/confirm_delete.html", "users", target=target)


@router.post("/users/{user_id}/delete", dependencies=[back_to(USER_PAGE), Form_])
async def delete_user(
    request: Request,
    user_id: uuid.UUID,
    console: AdminConsole,
    users: UserServiceDep,
    confirm_email: Annotated[StorableText, Form(max_length=320)],
) -> Response:
    """DELETE /api/v1/users/{id} (users:delete), once the form names the account being deleted."""
    console.require(Permission.users_delete)
    target = await users.get(user_id)
    if confirm_email != target.email:
        raise InvalidForm(f"The confirmation does not name {target.email}; nothing was deleted")
    await users.admin_delete(console.actor, target)
    flash(request, f"The account {target.email} is deleted.")
    return redirect(request, f"{c.ADMIN}/users")
