"""Builds the users service per request and resolves a path's user id to the user (404 otherwise)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Path

from userapi.auth.dependencies import get_users
from userapi.users.models import User
from userapi.users.service import UserService

# The one users service of a request: the same dependency the auth services take, so a route that
# uses both gets one instance (FastAPI calls a dependency once per request).
UserServiceDep = Annotated[UserService, Depends(get_users)]


UserIdParam = Annotated[uuid.UUID, Path(description="The user's id (a UUID, the `id` of the user's JSON).")]


async def get_target_user(user_id: UserIdParam, users: UserServiceDep) -> User:
    return await users.get(user_id)


TargetUser = Annotated[User, Depends(get_target_user)]
