"""HTTP routes of the users domain: the caller's own account, and admin user management."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, status

from userapi.auth.dependencies import AdminUser, AuthServiceDep, CurrentUser
from userapi.core.client import ClientDep
from userapi.core.config import API_PREFIX
from userapi.core.pagination import CursorParam, LimitParam
from userapi.core.validation import StorableText
from userapi.users.constants import Role
from userapi.users.dependencies import TargetUser, UserServiceDep
from userapi.users.models import User
from userapi.users.schemas import (
    PasswordChange,
    UserCreate,
    UserPage,
    UserRead,
    UserSelfUpdate,
    UserUpdate,
)
from userapi.users.service import Actor

# Routers carry their full prefix, so a route knows its whole path template (metrics, logs).
router = APIRouter(prefix=f"{API_PREFIX}/users", tags=["users"])
_not_found: dict[int | str, dict[str, Any]] = {404: {"description": "No such user"}}
_last_admin: dict[int | str, dict[str, Any]] = {
    409: {"description": "The last active admin cannot lose that status"}
}


@router.get("/me", response_model=UserRead)
async def read_me(user: CurrentUser) -> User:
    return user


@router.patch("/me", response_model=UserRead)
async def update_me(body: UserSelfUpdate, user: CurrentUser, users: UserServiceDep) -> User:
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
)
async def change_password(
    body: PasswordChange, user: CurrentUser, auth: AuthServiceDep, client: ClientDep
) -> None:
    await auth.change_password(user, body.current_password, body.new_password, client)


@router.get("", response_model=UserPage)
async def list_users(
    admin: AdminUser,
    users: UserServiceDep,
    limit: LimitParam = 20,
    cursor: CursorParam = None,
    role: Role | None = None,
    email: Annotated[
        StorableText | None,
        Query(max_length=320, description="Email prefix, in any form (compared canonically)"),
    ] = None,
) -> dict[str, object]:
    rows, next_cursor = await users.page(limit, cursor, role, email)
    # The response model validates the ORM rows once (from attributes); building UserRead
    # objects here as well would validate every row twice.
    return {"items": rows, "next_cursor": next_cursor}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=UserRead,
    responses={409: {"description": "Email taken"}},
)
async def create_user(body: UserCreate, admin: AdminUser, users: UserServiceDep, client: ClientDep) -> User:
    user = await users.admin_create(
        Actor.admin(admin, client),
        email=body.email,
        password=body.password,
        full_name=body.full_name,
        role=body.role,
        is_active=body.is_active,
    )
    return user


@router.get("/{user_id}", response_model=UserRead, responses=_not_found)
async def read_user(admin: AdminUser, target: TargetUser) -> User:
    return target


@router.patch("/{user_id}", response_model=UserRead, responses={**_not_found, **_last_admin})
async def update_user(
    body: UserUpdate, admin: AdminUser, target: TargetUser, users: UserServiceDep, client: ClientDep
) -> User:
    user = await users.admin_update(
        Actor.admin(admin, client),
        target,
        role=body.role,
        is_active=body.is_active,
        full_name=body.full_name,
        fields=body.model_fields_set,
    )
    return user


@router.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT, responses={**_not_found, **_last_admin})
async def delete_user(admin: AdminUser, target: TargetUser, users: UserServiceDep, client: ClientDep) -> None:
    await users.admin_delete(Actor.admin(admin, client), target)
