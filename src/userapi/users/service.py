"""The rules of the users domain: accounts, profiles, admin user management and the last-admin guard."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from userapi.audit.constants import EventType
from userapi.core.canonical import (
    InvalidEmail,
    canonical_email,
    canonical_email_or_none,
    canonical_email_prefix,
)
from userapi.core.client import ClientInfo
from userapi.core.pagination import decode_cursor, key_datetime, key_uuid, next_page
from userapi.core.security import PasswordHasher
from userapi.users import policy
from userapi.users.constants import Role
from userapi.users.exceptions import EmailTaken, InvalidEmailAddress, LastAdmin, UserNotFound
from userapi.users.models import User
from userapi.users.repository import UserRepository


class Sessions(Protocol):
    """What users needs from auth: ending every sign-in session of an account (auth implements it)."""

    async def revoke_user_sessions(self, user_id: uuid.UUID) -> None: ...


class AuditTrail(Protocol):
    """What users needs from audit: recording an event (audit's AuditService implements it)."""

    async def record(
        self,
        type_: EventType,
        *,
        user_id: uuid.UUID | None,
        client: ClientInfo | None = None,
        actor_id: uuid.UUID | None = None,
        **detail: str,
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes an admin change: a signed-in admin over HTTP, or an operator at the command line."""

    user_id: uuid.UUID | None
    client: ClientInfo | None
    # Recorded as the event's `actor` detail when there is no user to name (the CLI).
    label: str | None = None

    @classmethod
    def admin(cls, user: User, client: ClientInfo) -> Actor:
        return cls(user.id, client)

    @classmethod
    def cli(cls) -> Actor:
        return cls(None, None, "cli")


def _user_key(values: list[Any]) -> tuple[datetime, uuid.UUID]:
    created_at, user_id = values
    return key_datetime(created_at), key_uuid(user_id)


class UserService:
    """Accounts and their administration; sessions end and events are recorded through interfaces."""

    def __init__(
        self, repository: UserRepository, hasher: PasswordHasher, sessions: Sessions, audit: AuditTrail
    ) -> None:
        self.repository = repository
        self.hasher = hasher
        self.sessions = sessions
        self.audit = audit

    @classmethod
    def for_session(
        cls, session: AsyncSession, hasher: PasswordHasher, sessions: Sessions, audit: AuditTrail
    ) -> UserService:
        """The service on a caller's session (request, CLI): only users builds its repository."""
        return cls(UserRepository(session), hasher, sessions, audit)

    # --- accounts ---------------------------------------------------------------------------

    async def create(
        self,
        email: str,
        password: str,
        full_name: str | None = None,
        role: Role = Role.user,
        is_active: bool = True,
    ) -> User:
        """Create an account (not audited: callers record why).

        The email is stored in its canonical form whatever form the caller passed. Raises
        InvalidEmailAddress, WeakPassword, EmailTaken.
        """
        try:
            email = canonical_email(email)
        except InvalidEmail as exc:
            raise InvalidEmailAddress(str(exc)) from None
        policy.check_password(password, email, full_name)
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

    async def page(
        self, limit: int, cursor: str | None, role: Role | None, email_prefix: str | None
    ) -> tuple[list[User], str | None]:
        """A page of users in creation order and the cursor of the next one. Raises InvalidCursor.

        `email_prefix` is brought towards the canonical form as far as a prefix allows
        (core.canonical.canonical_email_prefix), so any form of an address finds its account.
        """
        after = decode_cursor(cursor, _user_key) if cursor else None
        email_prefix = canonical_email_prefix(email_prefix) if email_prefix else None
        rows = await self.repository.page(limit=limit + 1, after=after, role=role, email_prefix=email_prefix)
        return next_page(rows, limit, lambda user: [user.created_at.isoformat(), str(user.id)])

    async def update_profile(self, user: User, full_name: str | None) -> User:
        """Change the caller's own name."""
        user = await self.repository.attach(user)
        user.full_name = full_name
        await self.repository.flush()
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
        await self.repository.flush()

    async def set_mfa_enabled(self, user: User, enabled: bool) -> None:
        """Keep `users.mfa_enabled` in step with the mfa domain's factor (it owns the truth)."""
        attached = await self.repository.attach(user)
        attached.mfa_enabled = enabled
        await self.repository.flush()

    async def end_all_sessions(self, user: User) -> None:
        """End every session: access tokens carry the old token version, refresh tokens are revoked."""
        await self.repository.bump_token_version(user)
        await self.sessions.revoke_user_sessions(user.id)

    # --- administration (admins over HTTP, operators at the CLI), every change audited ------

    async def admin_create(
        self,
        actor: Actor,
        *,
        email: str,
        password: str,
        full_name: str | None,
        role: Role,
        is_active: bool,
    ) -> User:
        """Create an account with a role. Raises InvalidEmailAddress, WeakPassword, EmailTaken."""
        user = await self.create(email, password, full_name, role, is_active)
        await self._record(EventType.user_created, user, actor, role=role.value)
        return user

    async def admin_update(
        self,
        actor: Actor,
        user: User,
        *,
        role: Role | None = None,
        is_active: bool | None = None,
        full_name: str | None = None,
        fields: set[str],
    ) -> User:
        """Change role, activity or name. Raises LastAdmin. Deactivation ends every session."""
        old_role, was_active = user.role, user.is_active
        demotes = "role" in fields and role is not None and role is not Role.admin
        deactivates = "is_active" in fields and is_active is False
        if demotes or deactivates:
            await self._guard_last_admin(user, "demoted" if demotes else "deactivated")
        if "role" in fields and role is not None:
            user.role = role
        if "is_active" in fields and is_active is not None:
            user.is_active = is_active
        if "full_name" in fields:
            user.full_name = full_name
        await self.repository.flush()
        if user.role is not old_role:
            await self._record(EventType.role_changed, user, actor, old=old_role.value, new=user.role.value)
        if was_active and not user.is_active:
            await self.end_all_sessions(user)
            await self._record(EventType.user_deactivated, user, actor)
        elif not was_active and user.is_active:
            await self._record(EventType.user_reactivated, user, actor)
        return user

    async def admin_delete(self, actor: Actor, user: User) -> None:
        """Delete an account (its sessions go with it). Raises LastAdmin."""
        await self._guard_last_admin(user, "deleted")
        await self.repository.delete(user.id)
        await self._record(EventType.user_deleted, user, actor, email=user.email)

    # --- internals ------------------------------------------------------------------------

    async def _record(self, type_: EventType, user: User, actor: Actor, **detail: str) -> None:
        if actor.label is not None:
            detail["actor"] = actor.label
        await self.audit.record(type_, user_id=user.id, client=actor.client, actor_id=actor.user_id, **detail)

    async def _guard_last_admin(self, user: User, action: str) -> None:
        if user.role is not Role.admin or not user.is_active:
            return
        # Locked, so two admins demoting each other at once cannot both succeed: the second
        # sees the first's commit and finds itself the last one.
        admins = await self.repository.lock_active_admin_ids()
        if admins == [user.id]:
            raise LastAdmin(f"The last active admin cannot be {action}; promote another admin first")
