"""Builds the users service per request and resolves a path's user id to the user (404 otherwise)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Path

from userapi.audit.dependencies import AuditServiceDep
from userapi.auth.dependencies import SessionsDep
from userapi.core.runtime import RuntimeDep
from userapi.db.session import SessionDep
from userapi.users.models import User
from userapi.users.service import UserService

# `async def` even when nothing is awaited: FastAPI runs plain `def` dependencies in a worker thread.


async def get_user_service(
    session: SessionDep, runtime: RuntimeDep, sessions: SessionsDep, audit: AuditServiceDep
) -> UserService:
    return UserService.for_session(session, runtime.hasher, sessions, audit)


UserServiceDep = Annotated[UserService, Depends(get_user_service)]


UserIdParam = Annotated[uuid.UUID, Path(description="The user's id (a UUID, the `id` of the user's JSON).")]


async def get_target_user(user_id: UserIdParam, users: UserServiceDep) -> User:
    return await users.get(user_id)


TargetUser = Annotated[User, Depends(get_target_user)]
