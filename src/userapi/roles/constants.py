"""The permission catalogue (defined in code), the built-in roles, and what a role's permissions are."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType


class Permission(enum.StrEnum):
    """A permission: a stable name, `<resource>:<action>`, that routes require and roles grant.

    Names are part of the API (roles store them, tokens carry them): add new ones, never rename.
    Every member needs a line in CATALOGUE; the built-in `admin` role holds new ones at once.
    """

    users_read = "users:read"
    users_create = "users:create"
    users_update = "users:update"
    users_delete = "users:delete"
    users_manage_roles = "users:manage-roles"
    sessions_revoke = "sessions:revoke"
    mfa_reset = "mfa:reset"
    audit_read = "audit:read"
    roles_manage = "roles:manage"


# One line each, shown by GET /api/v1/permissions and `userapi roles show`.
CATALOGUE: Mapping[Permission, str] = MappingProxyType(
    {
        Permission.users_read: "List and read user accounts",
        Permission.users_create: "Create user accounts",
        Permission.users_update: "Change another account's name and active status",
        Permission.users_delete: "Delete user accounts",
        Permission.users_manage_roles: "Assign roles to accounts",
        Permission.sessions_revoke: "End every session of another account",
        Permission.mfa_reset: "Remove another account's second factor",
        Permission.audit_read: "Read the audit trail",
        Permission.roles_manage: "Create, change and delete roles; read the permission catalogue",
    }
)
ALL_PERMISSIONS: frozenset[str] = frozenset(CATALOGUE)

# The last-admin rule (users and roles): at least one active account must hold both, so someone
# can always manage roles and assign them (409 `last_admin` otherwise).
ADMINISTRATIVE: frozenset[str] = frozenset({Permission.roles_manage, Permission.users_manage_roles})


class BuiltInRole(enum.StrEnum):
    """Roles the migration creates; they cannot be changed or deleted."""

    user = "user"  # no permission beyond the caller's own account: every sign-up gets it
    admin = "admin"  # every permission in the catalogue, including ones added later


DEFAULT_ROLE = BuiltInRole.user

# A role's stable identifier; the same rule is a CHECK constraint on roles.name (migration 0004).
ROLE_NAME_PATTERN = r"^[a-z][a-z0-9_-]{1,62}$"
ROLE_NAME_MAX_CHARS = 63
ROLE_DESCRIPTION_MAX_CHARS = 200
_ROLE_NAME = re.compile(r"[a-z][a-z0-9_-]{1,62}")


def is_role_name(value: str) -> bool:
    """Whether `value` is a well-formed role name (a whole-string match: no trailing newline)."""
    return _ROLE_NAME.fullmatch(value) is not None


def effective_permissions(all_permissions: bool, stored: Iterable[str]) -> frozenset[str]:
    """What a role grants: the whole catalogue for a role flagged `all_permissions` (admin), else its
    stored names that the catalogue still has (a name removed from the code grants nothing)."""
    if all_permissions:
        return ALL_PERMISSIONS
    return ALL_PERMISSIONS.intersection(stored)
