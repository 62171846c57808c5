"""HTTP routes of the users domain: the caller's own account, and admin user management."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, status

from userapi.auth.dependencies import AuthServiceDep, CurrentUser, Principal, RecoveryServiceDep
from userapi.core.client import ClientDep
from userapi.core.config import API_PREFIX
from userapi.core.pagination import CursorParam, LimitParam
from userapi.core.schemas import Accepted
from userapi.core.validation import StorableText
from userapi.roles.constants import Permission
from userapi.roles.dependencies import require_permission
from userapi.roles.schemas import RoleName
from userapi.roles.service import Actor
from userapi.users.dependencies import TargetUser, UserServiceDep
from userapi.users.models import User
from userapi.users.schemas import (
    EmailChange,
    PasswordChange,
    UserCreate,
    UserPage,
    UserRead,
    UserSelfUpdate,
    UserUpdate,
)

# Routers carry their full prefix, so a route knows its whole path template (metrics, logs).
router = APIRouter(prefix=f"{API_PREFIX}/users", tags=["users"])
_not_found: dict[int | str, dict[str, Any]] = {404: {"description": "No such user"}}
_last_admin: dict[int | str, dict[str, Any]] = {
    409: {"description": "`last_admin`: the last active admin cannot lose that status"}
}
_unknown_role: dict[int | str, dict[str, Any]] = {422: {"description": "Invalid input, or `unknown_role`"}}

# Each admin route declares the permission it needs (a 403 names it when the caller's role lacks it).
Reader = Annotated[Principal, require_permission(Permission.users_read)]
Creator = Annotated[Principal, require_permission(Permission.users_create)]
Updater = Annotated[Principal, require_permission(Permission.users_update)]
Deleter = Annotated[Principal, require_permission(Permission.users_delete)]
Revoker = Annotated[Principal, require_permission(Permission.sessions_revoke)]


def _actor(caller: Principal, client: ClientDep) -> Actor:
    return Actor.signed_in(caller.user.id, caller.permissions, client)


@router.get("/me", response_model=UserRead, summary="Read your own account")
async def read_me(user: CurrentUser) -> User:
    """The account of the access token's user, as stored now (role, active state, name)."""
    return user


@router.patch("/me", response_model=UserRead, summary="Change your own full name")
async def update_me(body: UserSelfUpdate, user: CurrentUser, users: UserServiceDep) -> User:
    """Sets `full_name` (`null` clears it); the only field users may change on their own account.
    Email, role and active state are changed by an admin (`PATCH /api/v1/users/{user_id}`);
    any other member is refused with 422."""
    if "full_name" in body.model_fields_set:
        user = await users.update_profile(user, body.full_name)
    return user


@router.post(
    "/me/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        403: {"description": "Wrong current password"},
        429: {"description": "Too many checks of this account's password (RATE_LIMIT_SECRET_*)"},
    },
    summary="Change your password",
)
async def change_password(
    body: PasswordChange, user: CurrentUser, auth: AuthServiceDep, client: ClientDep
) -> None:
    """Replaces the password after checking `current_password` (403 when wrong). The new password
    follows the sign-up policy (8 characters or more, not one of the most common passwords).
    Every session of the account ends, and access tokens issued before stop working: sign in
    again with the new password."""
    await auth.change_password(user, body.current_password, body.new_password, client)


@router.post(
    "/me/email",
    summary="Change my email address (confirmed by mail)",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    responses={
        403: {"description": "Wrong current password"},
        409: {"description": "`email_taken`: another account has the new address"},
        429: {"description": "Throttled"},
        503: {"description": "`mail_unavailable`: this service runs with MAIL_DELIVERY=off"},
    },
)
async def change_email(
    body: EmailChange, user: CurrentUser, recovery: RecoveryServiceDep, client: ClientDep
) -> Accepted:
    """Ask to change the address: a confirmation link goes to the new one, a notice to the old one.
    Nothing changes until the link is used (POST /api/v1/auth/email/change/confirm)."""
    await recovery.request_email_change(user, body.new_email, body.current_password, client)
    return Accepted(detail=f"A confirmation link is on its way to {body.new_email}.")


@router.get("", response_model=UserPage, summary="List users (users:read)")
async def list_users(
    caller: Reader,
    users: UserServiceDep,
    limit: LimitParam = 20,
    cursor: CursorParam = None,
    role: Annotated[
        RoleName | None,
        Query(description="Only users holding the role with this name (a name no role has: no items)."),
    ] = None,
    email: Annotated[
        StorableText | None,
        Query(
            max_length=320,
            description="Only users whose email starts with this, in any form (compared canonically).",
        ),
    ] = None,
) -> dict[str, object]:
    """Users in the order they were created, a page at a time (keyset pagination: pass the
    response's `next_cursor` as `cursor` for the next page; it is `null` on the last page).
    Needs the permission `users:read`."""
    rows, next_cursor = await users.page(limit, cursor, role, email)
    # The response model validates the ORM rows once (from attributes); building UserRead
    # objects here as well would validate every row twice.
    return {"items": rows, "next_cursor": next_cursor}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=UserRead,
    responses={409: {"description": "Email taken"}, **_unknown_role},
    summary="Create a user (users:create)",
)
async def create_user(body: UserCreate, caller: Creator, users: UserServiceDep, client: ClientDep) -> User:
    """Creates an account with the given active state and role (`user` when absent), under the
    sign-up rules for the email and password; 409 `email_taken` when the address is in use (in any
    letter case). Needs `users:create`; a `role` also needs `users:manage-roles` and every
    permission of that role (422 `unknown_role` when no role has that name). Recorded in the
    audit trail."""
    user = await users.admin_create(
        _actor(caller, client),
        email=body.email,
        password=body.password,
        full_name=body.full_name,
        role=body.role,
        is_active=body.is_active,
    )
    return user


@router.get("/{user_id}", response_model=UserRead, responses=_not_found, summary="Read a user (users:read)")
async def read_user(caller: Reader, target: TargetUser) -> User:
    """One user by id; 404 when there is none. Needs the permission `users:read`."""
    return target


@router.patch(
    "/{user_id}",
    response_model=UserRead,
    responses={**_not_found, **_last_admin, **_unknown_role},
    summary="Change a user's role, active state or name (users:update)",
)
async def update_user(
    body: UserUpdate, caller: Updater, target: TargetUser, users: UserServiceDep, client: ClientDep
) -> User:
    """Changes the members sent (`role`, `is_active`, `full_name`); the others stay. Needs
    `users:update`; a `role` also needs `users:manage-roles` and every permission of the new role,
    and an account whose role holds permissions the caller lacks cannot be changed (403). A role
    change takes effect on the user's very next request and ends no session; a deactivation ends
    every session. The last active admin cannot be demoted or deactivated (409). Recorded in the
    audit trail."""
    user = await users.admin_update(
        _actor(caller, client),
        target,
        role=body.role,
        is_active=body.is_active,
        full_name=body.full_name,
        fields=body.model_fields_set,
    )
    return user


@router.delete(
    "/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**_not_found, **_last_admin},
    summary="Delete a user (users:delete)",
)
async def delete_user(caller: Deleter, target: TargetUser, users: UserServiceDep, client: ClientDep) -> None:
    """Deletes the account and its sessions; its tokens stop working at once. Needs `users:delete`
    and every permission of the account's role. The last active admin cannot be deleted (409).
    Recorded in the audit trail."""
    await users.admin_delete(_actor(caller, client), target)


@router.delete(
    "/{user_id}/sessions",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_not_found,
    summary="End every session of a user (sessions:revoke)",
)
async def end_user_sessions(
    caller: Revoker, target: TargetUser, users: UserServiceDep, client: ClientDep
) -> None:
    """Signs the account out everywhere: its access tokens stop working on their next request and
    its refresh tokens are revoked; the account stays active and may sign in again. Needs
    `sessions:revoke` and every permission of the account's role. Recorded in the audit trail."""
    await users.admin_end_sessions(_actor(caller, client), target)
