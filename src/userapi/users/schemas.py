"""Request and response schemas of the users domain (what goes over the wire; never a hash)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, field_validator
from pydantic.json_schema import SkipJsonSchema

from userapi.core.pagination import Page
from userapi.core.validation import Email, FullName, LoginPassword, NewPassword
from userapi.users.constants import Role


class _Input(BaseModel):
    # Unknown fields are refused, so `role` in a self-service body is an error, not silently dropped.
    model_config = ConfigDict(extra="forbid")


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    full_name: str | None
    role: Role
    is_active: bool
    mfa_enabled: bool
    created_at: datetime
    updated_at: datetime


class UserRegister(_Input):
    email: Email
    password: NewPassword
    full_name: FullName | None = None


class UserCreate(UserRegister):
    role: Role = Role.user
    is_active: bool = True


class UserSelfUpdate(_Input):
    full_name: FullName | None = None


class UserUpdate(_Input):
    # Absent means "leave as is"; an explicit null is refused (a role or status cannot be unset).
    role: Role | SkipJsonSchema[None] = None
    is_active: bool | SkipJsonSchema[None] = None
    full_name: FullName | None = None

    @field_validator("role", "is_active", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("must not be null; leave the field out to keep it")
        return value


class PasswordChange(_Input):
    current_password: LoginPassword
    new_password: NewPassword


class UserPage(Page[UserRead]):
    pass
