"""The rules of the users domain: accounts, profiles, admin user management and the last-admin guard."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from userapi.audit.constants import EventType
from userapi.audit.trail import AuditTrail
from userapi.core.canonical import (
    InvalidEmail,
    canonical_email,
    canonical_email_or_none,
    canonical_email_prefix,
    refuse_lookalike_address,
)
from userapi.core.pagination import decode_cursor, key_datetime, key_uuid, next_page
from userapi.core.security import PasswordHasher
from userapi.roles.constants import DEFAULT_ROLE, Permission
from userapi.roles.exceptions import LastAdmin
from userapi.roles.service import Actor, RoleService, is_administrative
from userapi.users import policy
from userapi.users.exceptions import EmailTaken, InvalidEmailAddress, UserNotFound, UserSessionNotFound
from userapi.users.models import User
from userapi.users.repository import UserRepository


class Sessions(Protocol):
    """What users needs from auth: ending every sign-in session of an account (auth implements it)."""

    async def revoke_user_sessions(self, user_id: uuid.UUID) -> None: ...

    async def revoke_user_session(self, user_id: uuid.UUID, session_id: uuid.UUID) -> bool:
        """End one session of the account; False when it has no such live session."""
        ...


class UserRoleHolders:
    """Users' side of roles' `RoleHolders` interface: who holds which role (roles never imports users)."""

    def __init__(self, repository: UserRepository) -> None:
        self.repository = repository

    @classmethod
    def for_session(cls, session: AsyncSession) -> UserRoleHolders:
        return cls(UserRepository(session))

    async def count_by_role(self) -> dict[str, int]:
        return await self.repository.count_by_role()

    async def active_holders(self, role_names: Collection[str]) -> list[tuple[uuid.UUID, str]]:
        return await self.repository.active_holders(role_names)


def _user_key(values: list[Any]) -> tuple[datetime, uuid.UUID]:
    created_at, user_id = values
    return key_datetime(created_at), key_uuid(user_id)


class UserService:
    """Accounts and their administration; sessions end, events are recorded and roles are read
    through interfaces (auth, audit) and the roles service (users never imports auth)."""

    def __init__(
        self,
        repository: UserRepository,
        hasher: PasswordHasher,
        sessions: Sessions,
        audit: AuditTrail,
        roles: RoleService,
    ) -> None:
        self.repository = repository
        self.hasher = hasher
        self.sessions = sessions
        self.audit = audit
        self.roles = roles

    @classmethod
    def for_session(
        cls, session: AsyncSession, hasher: PasswordHasher, sessions: Sessions, audit: AuditTrail
    ) -> UserService:
        """The service on a caller's session (request, CLI): only users builds its repository."""
        repository = UserRepository(session)
        roles = RoleService.for_session(session, UserRoleHolders(repository), audit)
        return cls(repository, hasher, sessions, audit, roles)

    # --- accounts ---------------------------------------------------------------------------

    async def create(
        self,
        email: str,
        password: str,
        full_name: str | None = None,
        role: str = DEFAULT_ROLE,
        is_active: bool = True,
    ) -> User:
        """Create an account (not audited: callers record why).

        The email is stored in its canonical form whatever form the caller passed. Raises
        InvalidEmailAddress, WeakPassword, UnknownRole, EmailTaken.
        """
        try:
            email = canonical_email(email)
            refuse_lookalike_address(email)
        except InvalidEmail as exc:
            raise InvalidEmailAddress(str(exc)) from None
        policy.check_password(password, email, full_name)
        if role != DEFAULT_ROLE:
            await self.roles.for_assignment(role)
        password_hash = await self.hasher.hash(password)
        user = await self.repository.insert_unless_email_taken(
            {
                "email": email,
                "password_hash": password_hash,
                "full_name": full_name,
                "role": role,
                "is_active": is_active,
            }
        )
        if user is None:
            raise EmailTaken(f"An account with the email {email} already exists")
        return user

    async def get(self, user_id: uuid.UUID) -> User:
        """One user by id. Raises UserNotFound."""
        user = await self.repository.get(user_id)
        if user is None:
            raise UserNotFound(f"No user with id {user_id}")
        return user

    async def get_by_email(self, email: str) -> User | None:
        """The account of an address in any of its forms (canonicalised here); None for no account or
        for a text that is not an address. For sign-in now, email change and account recovery later."""
        canonical = canonical_email_or_none(email)
        return await self.repository.get_by_email(canonical) if canonical is not None else None

    async def permissions_of(self, user: User) -> frozenset[str]:
        """What the account's role grants now (for the token's informational claims)."""
        return await self.roles.permissions_of(user.role)

    async def page(
        self,
        limit: int,
        cursor: str | None,
        role: str | None,
        email_prefix: str | None,
        *,
        is_active: bool | None = None,
    ) -> tuple[list[User], str | None]:
        """A page of users in creation order and the cursor of the next one. Raises InvalidCursor.

        `role` filters by role name; a name no role has gives an empty page (a filter, not a reference).
        `is_active` keeps only active (True) or deactivated (False) accounts.

        `email_prefix` is brought towards the canonical form as far as a prefix allows
        (core.canonical.canonical_email_prefix), so any form of an address finds its account.
        """
        after = decode_cursor(cursor, _user_key) if cursor else None
        email_prefix = canonical_email_prefix(email_prefix) if email_prefix else None
        rows = await self.repository.page(
            limit=limit + 1, after=after, role=role, email_prefix=email_prefix, is_active=is_active
        )
        return next_page(rows, limit, lambda user: [user.created_at.isoformat(), str(user.id)])

    async def update_profile(self, user: User, full_name: str | None) -> User:
        """Change the caller's own name. Raises UserNotFound (deleted meanwhile)."""
        user = await self.repository.attach(user)
        user.full_name = full_name
        await self._save(user)
        return user

    def check_new_password(self, user: User, new_password: str) -> None:
        """Refuse a new password built on the user's own email or name. Raises WeakPassword."""
        policy.check_password(new_password, user.email, user.full_name)

    async def set_password(self, user: User, new_password: str) -> None:
        """Replace the password (change, reset): the policy applies. Raises WeakPassword."""
        self.check_new_password(user, new_password)
        await self._store_password(user, new_password)

    async def rehash_password(self, user: User, password: str) -> None:
        """Store a fresh hash of the password just verified (new cost, canonical form); no policy:
        the password is not new."""
        await self._store_password(user, password)

    async def _store_password(self, user: User, password: str) -> None:
        password_hash = await self.hasher.hash(password)
        user = await self.repository.attach(user)
        user.password_hash = password_hash
        await self._save(user)

    async def mark_email_verified(self, user: User) -> None:
        """Record that the owner proved the address is theirs (idempotent)."""
        await self.repository.set_email_verified(user)

    async def change_email(self, user: User, new_email: str) -> None:
        """Give the account a new (verified) address. Raises EmailTaken."""
        if not await self.repository.set_verified_email_unless_taken(user, new_email):
            raise EmailTaken(f"An account with the email {new_email} already exists")

    async def set_mfa_enabled(self, user: User, enabled: bool) -> None:
        """Keep `users.mfa_enabled` in step with the mfa domain's factor (it owns the truth)."""
        attached = await self.repository.attach(user)
        attached.mfa_enabled = enabled
        await self.repository.flush()

    async def end_all_sessions(self, user: User) -> None:
        """End every session: access tokens carry the old token version, refresh tokens are revoked.

        Raises UserNotFound (deleted meanwhile)."""
        if not await self.repository.bump_token_version(user):
            raise UserNotFound(f"No user with id {user.id}")
        await self.sessions.revoke_user_sessions(user.id)

    # --- administration (admins over HTTP, operators at the CLI), every change audited ------
    #
    # Beyond the permission each route requires: assigning a role needs users:manage-roles and
    # every permission of that role, and an account may only be changed, deleted or signed out by
    # an actor holding every permission of its role (no escalation, OWASP ASVS V4.1.3).

    async def admin_create(
        self,
        actor: Actor,
        *,
        email: str,
        password: str,
        full_name: str | None,
        role: str | None,
        is_active: bool,
    ) -> User:
        """Create an account, with `role` or the default one.

        Raises MissingPermission, InvalidEmailAddress, WeakPassword, UnknownRole, EmailTaken.
        """
        if role is not None:
            await self._may_assign(actor, role)
        user = await self.create(email, password, full_name, role or DEFAULT_ROLE, is_active)
        await self._record(EventType.user_created, user, actor, role=user.role)
        return user

    async def admin_update(
        self,
        actor: Actor,
        user: User,
        *,
        role: str | None = None,
        is_active: bool | None = None,
        full_name: str | None = None,
        fields: Collection[str],
    ) -> User:
        """Change role, activity or name; a role change acts on the account's next request and ends
        no session, a deactivation ends every session.

        Raises MissingPermission, UnknownRole, LastAdmin.
        """
        await self.may_act_on(actor, user)
        old_role, was_active = user.role, user.is_active
        new_role = role if "role" in fields and role is not None else old_role
        demotes = False
        if "role" in fields and role is not None:
            demotes = not is_administrative(await self._may_assign(actor, role)) and role != old_role
        deactivates = "is_active" in fields and is_active is False
        if demotes or deactivates:
            await self._guard_last_admin(user, "demoted" if demotes else "deactivated")
        user.role = new_role
        if "is_active" in fields and is_active is not None:
            user.is_active = is_active
        if "full_name" in fields:
            user.full_name = full_name
        await self._save(user)
        if user.role != old_role:
            await self._record(EventType.role_changed, user, actor, old=old_role, new=user.role)
        if was_active and not user.is_active:
            await self.end_all_sessions(user)
            await self._record(EventType.user_deactivated, user, actor)
        elif not was_active and user.is_active:
            await self._record(EventType.user_reactivated, user, actor)
        return user

    async def admin_delete(self, actor: Actor, user: User) -> None:
        """Delete an account (its sessions go with it). Raises MissingPermission, LastAdmin."""
        await self.may_act_on(actor, user)
        await self._guard_last_admin(user, "deleted")
        if not await self.repository.delete(user.id):
            raise UserNotFound(f"No user with id {user.id}")
        await self._record(EventType.user_deleted, user, actor, email=user.email, role=user.role)

    async def admin_end_sessions(self, actor: Actor, user: User) -> None:
        """End every session of another account (its next request gets 401). Raises MissingPermission."""
        await self.may_act_on(actor, user)
        await self.end_all_sessions(user)
        await self._record(EventType.sessions_revoked, user, actor)

    async def admin_end_session(self, actor: Actor, user: User, session_id: uuid.UUID) -> None:
        """End one session of another account (a lost phone; the web console's "End"). Raises
        MissingPermission, UserSessionNotFound."""
        await self.may_act_on(actor, user)
        if not await self.sessions.revoke_user_session(user.id, session_id):
            raise UserSessionNotFound(f"No active session {session_id} of that account")
        await self._record(EventType.session_revoked, user, actor, session_id=str(session_id))

    # --- internals ------------------------------------------------------------------------

    async def _save(self, user: User) -> None:
        # A concurrent delete wins over a change: the change is a 404, not a 500. (The id is read
        # first: after a failed flush the session refuses to load anything.)
        user_id = user.id
        if not await self.repository.flush():
            raise UserNotFound(f"No user with id {user_id}")

    async def _may_assign(self, actor: Actor, role: str) -> frozenset[str]:
        """The permissions of `role`, if `actor` may assign it. Raises MissingPermission, UnknownRole."""
        actor.require({Permission.users_manage_roles}, "Assigning a role needs users:manage-roles")
        granted = await self.roles.for_assignment(role)
        actor.require(granted, f"You cannot assign the role {role!r}: it grants permissions your role lacks")
        return granted

    async def may_act_on(self, actor: Actor, user: User) -> None:
        """Raises MissingPermission unless `actor` holds every permission of `user`'s role (no
        escalation through another account, OWASP ASVS V4.1.3); acting on oneself is allowed."""
        if actor.user_id == user.id:
            return  # the actor's permissions are this account's own
        held = await self.roles.permissions_of(user.role)
        actor.require(held, "That account's role holds permissions yours lacks")

    async def _record(self, type_: EventType, user: User, actor: Actor, **detail: object) -> None:
        if actor.label is not None:
            detail["actor"] = actor.label
        await self.audit.record(type_, user_id=user.id, client=actor.client, actor_id=actor.user_id, **detail)

    async def _guard_last_admin(self, user: User, action: str) -> None:
        """Raises LastAdmin when `user` is the only active account whose role satisfies the rule.

        Decided under the locks of the administrative roles' rows, which every such decision takes
        first: two admins removing each other at once cannot both succeed, the second waits for the
        first to commit and then finds itself the last one.
        """
        administrative = await self.roles.lock_administrative()
        holders = {user_id for user_id, _ in await self.repository.active_holders(administrative)}
        if holders == {user.id}:
            raise LastAdmin(f"The last active admin cannot be {action}; promote another admin first")
