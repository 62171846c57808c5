"""The rules of the users domain: accounts, profiles, roles and the last-admin guard."""

from __future__ import annotations

import binascii
import uuid
from datetime import UTC, datetime

import orjson

from userapi.core.security import PasswordHasher
from userapi.core.validation import decode_cursor_bytes, encode_cursor_bytes
from userapi.users.constants import Role
from userapi.users.exceptions import EmailTaken, InvalidCursor, LastAdmin, UserNotFound
from userapi.users.models import User
from userapi.users.repository import UserRepository


def encode_cursor(user: User) -> str:
    return encode_cursor_bytes(orjson.dumps([user.created_at.isoformat(), str(user.id)]))


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created_at, user_id = orjson.loads(decode_cursor_bytes(cursor))
        if not isinstance(created_at, str) or not isinstance(user_id, str):
            raise TypeError("cursor parts must be strings")  # uuid.UUID(5) raises AttributeError
        parsed = datetime.fromisoformat(created_at)
        if parsed.tzinfo is None:
            raise ValueError("naive timestamp")
        # In UTC, as the driver sends it: out of range (year 1 at +14:00) fails here, not as a 500 there.
        return parsed.astimezone(UTC), uuid.UUID(user_id)
    except (ValueError, TypeError, OverflowError, binascii.Error, orjson.JSONDecodeError):
        raise InvalidCursor("The cursor is not one this service issued") from None


class UserService:
    def __init__(self, repository: UserRepository, hasher: PasswordHasher) -> None:
        self.repository = repository
        self.hasher = hasher

    async def create(
        self,
        email: str,
        password: str,
        full_name: str | None = None,
        role: Role = Role.user,
        is_active: bool = True,
    ) -> User:
        """Create an account. Raises EmailTaken."""
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
        return await self.repository.get_by_email(email)

    async def page(
        self, limit: int, cursor: str | None, role: Role | None, email_prefix: str | None
    ) -> tuple[list[User], str | None]:
        """A page of users in creation order and the cursor of the next one. Raises InvalidCursor."""
        after = decode_cursor(cursor) if cursor else None
        # One row more than asked tells whether a next page exists without a count.
        rows = await self.repository.page(limit=limit + 1, after=after, role=role, email_prefix=email_prefix)
        if len(rows) > limit:
            return rows[:limit], encode_cursor(rows[limit - 1])
        return rows, None

    async def update_profile(self, user: User, full_name: str | None) -> User:
        """Change the caller's own name."""
        user = await self.repository.attach(user)
        user.full_name = full_name
        await self.repository.flush()
        return user

    async def update(
        self,
        user: User,
        *,
        role: Role | None = None,
        is_active: bool | None = None,
        full_name: str | None = None,
        fields: set[str],
    ) -> User:
        """Admin update of the given fields. Raises LastAdmin."""
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
        return user

    async def delete(self, user: User) -> None:
        """Delete an account. Raises LastAdmin."""
        await self._guard_last_admin(user, "deleted")
        await self.repository.delete(user.id)

    async def set_password(self, user: User, new_password: str) -> None:
        password_hash = await self.hasher.hash(new_password)
        user = await self.repository.attach(user)
        user.password_hash = password_hash
        await self.repository.flush()

    async def end_all_sessions(self, user: User) -> None:
        """Invalidate every access token issued so far (they carry the old version)."""
        await self.repository.bump_token_version(user)

    async def _guard_last_admin(self, user: User, action: str) -> None:
        if user.role is not Role.admin or not user.is_active:
            return
        # Locked, so two admins demoting each other at once cannot both succeed: the second
        # sees the first's commit and finds itself the last one.
        admins = await self.repository.lock_active_admin_ids()
        if admins == [user.id]:
            raise LastAdmin(f"The last active admin cannot be {action}; promote another admin first")
