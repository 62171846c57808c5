"""The rules of roles: roles as data, changes (audited, never escalating), the last-admin rule."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from userapi.audit.constants import EventType
from userapi.audit.trail import AuditTrail
from userapi.core.client import ClientInfo
from userapi.roles import constants
from userapi.roles.constants import ADMINISTRATIVE, CATALOGUE, effective_permissions
from userapi.roles.exceptions import (
    BuiltInRoleError,
    InvalidRoleName,
    LastAdmin,
    MissingPermission,
    RoleInUse,
    RoleNameTaken,
    RoleNotFound,
    UnknownPermission,
    UnknownRole,
)
from userapi.roles.models import Role
from userapi.roles.repository import RoleRepository


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes an audited change and what they may do: a signed-in account over HTTP (its role's
    permissions, read on this request), or an operator at the command line (every permission)."""

    user_id: uuid.UUID | None
    client: ClientInfo | None
    permissions: frozenset[str]
    # Recorded as the event's `actor` detail when there is no account to name (the CLI).
    label: str | None = None

    @classmethod
    def signed_in(cls, user_id: uuid.UUID, permissions: frozenset[str], client: ClientInfo) -> Actor:
        return cls(user_id, client, permissions)

    @classmethod
    def cli(cls) -> Actor:
        # Whoever runs the CLI can reach the database directly: it holds every permission.
        return cls(None, None, constants.ALL_PERMISSIONS, "cli")

    def require(self, needed: Iterable[str], detail: str | None = None) -> None:
        """Raises MissingPermission unless the actor holds every permission in `needed`.

        Used against privilege escalation (OWASP ASVS V4.1.3, least privilege): nobody grants or
        assigns a permission they do not hold themselves, nor acts on an account that holds more.
        """
        missing = set(needed) - self.permissions
        if missing:
            raise MissingPermission(missing, detail)


class RoleHolders(Protocol):
    """What roles needs to know about the accounts holding roles (the users domain implements it)."""

    async def count_by_role(self) -> dict[str, int]:
        """How many accounts (active or not) hold each role, by role name."""
        ...

    async def active_holders(self, role_names: Collection[str]) -> list[tuple[uuid.UUID, str]]:
        """(id, role) of every active account holding one of `role_names`."""
        ...


@dataclass(frozen=True, slots=True)
class RoleView:
    """A role as shown: its effective permissions (the whole catalogue for admin) and, in listings,
    how many accounts hold it."""

    name: str
    description: str
    built_in: bool
    all_permissions: bool
    permissions: list[str]
    user_count: int | None = None


def _view(role: Role, user_count: int | None = None) -> RoleView:
    granted = effective_permissions(role.all_permissions, role.permissions)
    return RoleView(
        role.name, role.description, role.built_in, role.all_permissions, sorted(granted), user_count
    )


def _snapshot(role: Role) -> dict[str, object]:
    return {"description": role.description, "permissions": sorted(role.permissions)}


def valid_permissions(names: Iterable[str]) -> list[str]:
    """`names` without duplicates, sorted. Raises UnknownPermission for a name not in the catalogue."""
    wanted = set(names)
    unknown = wanted - constants.ALL_PERMISSIONS
    if unknown:
        raise UnknownPermission(
            f"No such permission: {', '.join(sorted(unknown))} (GET /api/v1/permissions lists them)"
        )
    return sorted(wanted)


def is_administrative(permissions: Collection[str]) -> bool:
    """Whether a role granting `permissions` satisfies the last-admin rule."""
    return set(permissions) >= ADMINISTRATIVE


def _known(stored: Iterable[str]) -> set[str]:
    # Names the catalogue no longer has grant nothing; a change of the role drops them.
    return set(stored) & constants.ALL_PERMISSIONS


class RoleService:
    """Roles and their permissions; every change audited, none granting more than the actor holds."""

    def __init__(self, repository: RoleRepository, holders: RoleHolders, audit: AuditTrail) -> None:
        self.repository = repository
        self.holders = holders
        self.audit = audit

    @classmethod
    def for_session(cls, session: AsyncSession, holders: RoleHolders, audit: AuditTrail) -> RoleService:
        """The service on a caller's session (request, CLI): only roles builds its repository."""
        return cls(RoleRepository(session), holders, audit)

    # --- reading ------------------------------------------------------------------------------

    @staticmethod
    def catalogue() -> list[tuple[str, str]]:
        """(name, description) of every permission, in catalogue order."""
        return [(permission.value, description) for permission, description in CATALOGUE.items()]

    async def all_roles(self) -> list[RoleView]:
        """Every role, by name, with how many accounts hold it."""
        counts = await self.holders.count_by_role()
        return [_view(role, counts.get(role.name, 0)) for role in await self.repository.all()]

    async def names(self) -> list[str]:
        """Every role's name, in order (no holder counts: those scan the accounts)."""
        return [role.name for role in await self.repository.all()]

    async def get(self, name: str) -> RoleView:
        """One role with its user count. Raises RoleNotFound."""
        role = await self._existing(name)
        counts = await self.holders.count_by_role()
        return _view(role, counts.get(name, 0))

    async def permissions_of(self, name: str) -> frozenset[str]:
        """The permissions a role grants now (empty for a role that no longer exists)."""
        role = await self.repository.get(name)
        return effective_permissions(role.all_permissions, role.permissions) if role else frozenset()

    async def for_assignment(self, name: str) -> frozenset[str]:
        """The permissions of a role about to be assigned, its row share-locked so it cannot be
        deleted before the assignment commits. Raises UnknownRole."""
        role = await self.repository.share_for_assignment(name)
        if role is None:
            raise UnknownRole(f"No role named {name!r} (GET /api/v1/roles lists them)")
        return effective_permissions(role.all_permissions, role.permissions)

    async def lock_administrative(self) -> list[str]:
        """Names of the roles that satisfy the last-admin rule, their rows locked (see the repository)."""
        return await self.repository.lock_administrative(ADMINISTRATIVE)

    # --- changes ------------------------------------------------------------------------------

    async def create(self, actor: Actor, name: str, description: str, permissions: Iterable[str]) -> RoleView:
        """A custom role. Raises InvalidRoleName, UnknownPermission, MissingPermission, RoleNameTaken."""
        if not constants.is_role_name(name):
            raise InvalidRoleName(f"A role name matches {constants.ROLE_NAME_PATTERN}")
        granted = valid_permissions(permissions)
        actor.require(granted, "You cannot grant a permission your own role lacks")
        role = await self.repository.insert_unless_taken(
            {"name": name, "description": description, "permissions": granted}
        )
        if role is None:
            raise RoleNameTaken(f"A role named {name!r} already exists")
        await self._record(EventType.role_created, actor, role=name, after=_snapshot(role))
        return _view(role, 0)

    async def update(
        self,
        actor: Actor,
        name: str,
        *,
        description: str | None = None,
        permissions: Iterable[str] | None = None,
        fields: Collection[str],
    ) -> RoleView:
        """Change a custom role's description or permissions; holders feel it on their next request.

        Raises RoleNotFound, BuiltInRoleError, UnknownPermission, MissingPermission, LastAdmin.
        """
        granted = valid_permissions(permissions or ()) if "permissions" in fields else None
        new_description = description if "description" in fields else None
        return await self._change(actor, name, lambda _current: granted, new_description)

    async def grant(self, actor: Actor, name: str, permissions: Iterable[str]) -> RoleView:
        """Add permissions to a custom role (the CLI's `roles grant`). Raises as `update`."""
        added = set(valid_permissions(permissions))
        return await self._change(actor, name, lambda current: sorted(_known(current) | added))

    async def revoke(self, actor: Actor, name: str, permissions: Iterable[str]) -> RoleView:
        """Remove permissions from a custom role (the CLI's `roles revoke`). Raises as `update`."""
        dropped = set(valid_permissions(permissions))
        return await self._change(actor, name, lambda current: sorted(_known(current) - dropped))

    async def delete(self, actor: Actor, name: str) -> None:
        """Delete a custom role no account holds. Raises RoleNotFound, BuiltInRoleError, RoleInUse.

        Only an unused role can go, so this never affects the last-admin rule.
        """
        # FOR UPDATE: assignments in flight finish first (and are counted); later ones find no role.
        role = await self.repository.lock(name, deleting=True)
        if role is None:
            raise RoleNotFound(f"No role named {name!r}")
        if role.built_in:
            raise BuiltInRoleError(f"The built-in role {name!r} cannot be deleted")
        holders = (await self.holders.count_by_role()).get(name, 0)
        if holders:
            raise RoleInUse(f"{holders} account(s) hold the role {name!r}; assign them another role first")
        before = _snapshot(role)
        await self.repository.delete(name)
        await self._record(EventType.role_deleted, actor, role=name, before=before)

    # --- internals ------------------------------------------------------------------------

    async def _change(
        self,
        actor: Actor,
        name: str,
        new_permissions: Callable[[list[str]], list[str] | None],
        description: str | None = None,
    ) -> RoleView:
        """Apply a change to the role's row as it is once locked (`new_permissions` gets the stored
        list and returns the new one, or None to keep it), guarding the last-admin rule."""
        # Lock order, the same everywhere: administrative roles, then this role, then accounts.
        administrative = await self.lock_administrative()
        role = await self.repository.lock(name)
        if role is None:
            raise RoleNotFound(f"No role named {name!r}")
        if role.built_in:
            raise BuiltInRoleError(f"The built-in role {name!r} cannot be changed")
        before = _snapshot(role)
        granted = new_permissions(list(role.permissions))
        if granted is not None:
            actor.require(set(granted) - set(role.permissions), "You cannot grant a permission you lack")
            if is_administrative(role.permissions) and not is_administrative(granted):
                if name not in administrative:  # it became administrative after that first read
                    administrative = await self.lock_administrative()
                await self._guard_last_admin(name, administrative)
            role.permissions = granted
        if description is not None:
            role.description = description
        await self.repository.flush()
        after = _snapshot(role)
        if after != before:
            await self._record(EventType.role_updated, actor, role=name, before=before, after=after)
        return await self.get(name)

    async def _existing(self, name: str) -> Role:
        role = await self.repository.get(name)
        if role is None:
            raise RoleNotFound(f"No role named {name!r}")
        return role

    async def _guard_last_admin(self, name: str, administrative: list[str]) -> None:
        # Read under the administrative roles' locks (taken by the caller): no other decision of
        # this rule can be halfway through.
        holders = await self.holders.active_holders(administrative)
        if any(role == name for _, role in holders) and all(role == name for _, role in holders):
            raise LastAdmin(
                f"Every active admin holds the role {name!r}: it must keep "
                f"{' and '.join(sorted(ADMINISTRATIVE))}; give another account an admin role first"
            )

    async def _record(self, type_: EventType, actor: Actor, **detail: object) -> None:
        if actor.label is not None:
            detail["actor"] = actor.label
        await self.audit.record(type_, user_id=None, client=actor.client, actor_id=actor.user_id, **detail)
