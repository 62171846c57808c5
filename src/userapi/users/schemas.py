"""Request and response schemas of the users domain (what goes over the wire; never a hash)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from userapi.core.pagination import Page
from userapi.core.validation import Email, FullName, LoginPassword, NewPassword
from userapi.roles.schemas import RoleName


class _Input(BaseModel):
    # Unknown fields are refused, so `role` in a self-service body is an error, not silently dropped.
    model_config = ConfigDict(extra="forbid")


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    full_name: str | None
    role: str = Field(description="The name of the account's role (GET /api/v1/roles lists them).")
    is_active: bool
    email_verified_at: datetime | None = Field(
        description="When the owner proved the address is theirs (a mailed link); null until then."
    )
    mfa_enabled: bool = Field(description="True when signing in needs a second factor (TOTP) too.")
    created_at: datetime
    updated_at: datetime


class UserRegister(_Input):
    email: Email
    password: NewPassword
    full_name: FullName | None = None


class UserCreate(UserRegister):
    # Absent: the default role, `user`. Present: needs users:manage-roles (422 unknown_role if none has it).
    role: RoleName | SkipJsonSchema[None] = None
    is_active: bool = True

    @field_validator("role", mode="before")
    @classmethod
    def _role_not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("must not be null; leave the field out for the default role")
        return value


class UserSelfUpdate(_Input):
    full_name: FullName | None = None


class UserUpdate(_Input):
    # Absent means "leave as is"; an explicit null is refused (a role or status cannot be unset).
    role: RoleName | SkipJsonSchema[None] = None
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


class EmailChange(_Input):
    new_email: Email
    current_password: LoginPassword
