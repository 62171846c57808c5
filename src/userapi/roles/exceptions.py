"""Domain errors of the roles domain (and the refusal every permission check raises)."""

from __future__ import annotations

from collections.abc import Iterable

from userapi.core.exceptions import Conflict, InvalidInput, NotFound, PermissionDenied


class MissingPermission(PermissionDenied):
    """403: the caller's role lacks a permission. The problem document names them in
    `missing_permissions`, as RFC 6750's `insufficient_scope` names the scope a request needs."""

    def __init__(self, missing: Iterable[str], detail: str | None = None) -> None:
        names = sorted(missing)
        super().__init__(
            detail or f"Your role lacks the permission(s) {', '.join(names)}", missing_permissions=names
        )


class RoleNotFound(NotFound):
    code = "role_not_found"
    title = "Role not found"


class UnknownRole(InvalidInput):
    """A request names a role that does not exist (422: the body refers to nothing)."""

    code = "unknown_role"
    title = "Unknown role"


class UnknownPermission(InvalidInput):
    code = "unknown_permission"
    title = "Unknown permission"


class InvalidRoleName(InvalidInput):
    code = "invalid_role_name"
    title = "Invalid role name"


class RoleNameTaken(Conflict):
    code = "role_name_taken"
    title = "Role name taken"


class BuiltInRoleError(Conflict):
    code = "built_in_role"
    title = "Built-in role"


class RoleInUse(Conflict):
    code = "role_in_use"
    title = "Role in use"


class LastAdmin(Conflict):
    """The change would leave no active account able to manage roles and assign them."""

    code = "last_admin"
    title = "Last active admin"
