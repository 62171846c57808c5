"""Request and response schemas of the roles domain (permissions are an enum of the catalogue)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from userapi.core.validation import StorableText
from userapi.roles.constants import (
    ROLE_DESCRIPTION_MAX_CHARS,
    ROLE_NAME_MAX_CHARS,
    ROLE_NAME_PATTERN,
    Permission,
)

# A role name as it appears anywhere in the API (bodies, paths, filters); anything else is a 422.
RoleName = Annotated[
    str,
    Field(
        min_length=2,
        max_length=ROLE_NAME_MAX_CHARS,
        pattern=ROLE_NAME_PATTERN,
        description="A role's name: lower-case letters, digits, `_` and `-`, starting with a letter.",
        examples=["support"],
    ),
]
RoleDescription = Annotated[StorableText, Field(max_length=ROLE_DESCRIPTION_MAX_CHARS)]
# Bounded, so a body cannot ask the validator for unbounded work; duplicates are merged.
PermissionList = Annotated[list[Permission], Field(max_length=4 * len(Permission))]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PermissionRead(BaseModel):
    name: Permission
    description: str


class RoleRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    description: str
    built_in: bool
    all_permissions: bool = Field(
        description="True for `admin`: it holds every permission, including ones added later."
    )
    permissions: list[Permission]
    user_count: int = Field(description="How many accounts (active or not) hold the role.")


class RoleCreate(_Input):
    name: RoleName
    description: RoleDescription = ""
    permissions: PermissionList = []


class RoleUpdate(_Input):
    # Absent means "leave as is"; an explicit null is refused.
    description: RoleDescription | SkipJsonSchema[None] = None
    permissions: PermissionList | SkipJsonSchema[None] = None

    @field_validator("description", "permissions", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("must not be null; leave the field out to keep it")
        return value
