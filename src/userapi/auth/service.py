"""The rules of authentication: sign-up, login, token rotation with reuse detection, sessions, audit."""

from __future__ import annotations

import binascii
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from userapi.auth.constants import EventType
from userapi.auth.exceptions import (
    InvalidCredentials,
    InvalidRefreshToken,
    SessionNotFound,
    WrongCurrentPassword,
)
from userapi.auth.models import AuthEvent, RefreshToken
from userapi.auth.repository import AuthRepository, CurrentUserRepository, SessionRow
from userapi.auth.schemas import TokenPair
from userapi.auth.throttle import Throttle
from userapi.core.config import Settings
from userapi.core.exceptions import InvalidInput, InvalidToken, Throttled
from userapi.core.metrics import AUTH_EVENTS, LOGINS, REFRESH_REUSE
from userapi.core.security import (
    AccessClaims,
    PasswordHasher,
    TokenCodec,
    new_opaque_token,
    opaque_token_hash,
)
from userapi.core.validation import decode_cursor_bytes, encode_cursor_bytes
from userapi.db.reads import ReadPool
from userapi.users.constants import Role
from userapi.users.models import User
from userapi.users.service import UserService

_MAX_EVENT_ID = 2**63 - 1


_LOGIN_OUTCOMES = {
    EventType.login_succeeded: "success",
    EventType.login_failed: "failure",
    EventType.login_throttled: "throttled",
}


def _decode_event_cursor(cursor: str) -> int:
    try:
        value = int(decode_cursor_bytes(cursor).decode("ascii"))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput("The cursor is not one this service issued") from None
    # Event ids are BIGINT: a forged cursor outside that range would reach the driver as a 500.
    if not 1 <= value <= _MAX_EVENT_ID:
        raise InvalidInput("The cursor is not one this service issued")
    return value


@dataclass(frozen=True, slots=True)
class ClientInfo:
    ip: str
    user_agent: str | None


class Authenticator:
    """Who is calling: the access token verified, then the account and session read (one query).

    Built once per process; it holds no per-request state.
    """

    def __init__(self, tokens: TokenCodec, users: CurrentUserRepository) -> None:
        self.tokens = tokens
        self.users = users

    @classmethod
    def on(cls, tokens: TokenCodec, reads: ReadPool) -> Authenticator:
        return cls(tokens, CurrentUserRepository(reads))

    async def authenticate(self, access_token: str) -> tuple[User, AccessClaims]:
        """The user behind an access token, read from the database. Raises InvalidToken."""
        claims = self.tokens.decode_access(access_token)
        found = await self.users.user_for_request(claims.user_id, claims.session_id)
        if found is None:
            raise InvalidToken("The account no longer exists")
        user, session_live = found
        if not user.is_active:
            raise InvalidToken("The account is deactivated")
        if user.token_version != claims.token_version or not session_live:
            raise InvalidToken("The session has ended")
        return user, claims


class AuthService:
    def __init__(
        self,
        repository: AuthRepository,
        users: UserService,
        hasher: PasswordHasher,
        tokens: TokenCodec,
        throttle: Throttle,
        settings: Settings,
    ) -> None:
        self.repository = repository
        self.users = users
        self.hasher = hasher
        self.tokens = tokens
        self.throttle = throttle
        self.settings = settings

    # --- accounts ---------------------------------------------------------------------------

    async def register(self, email: str, password: str, full_name: str | None, client: ClientInfo) -> User:
        """Create a user-role account. Raises Throttled, EmailTaken."""
        await self.throttle.hit_register(client.ip)
        user = await self.users.create(email, password, full_name)
        await self._event(EventType.signup, user.id, client)
        return user

    async def login(self, email: str, password: str, client: ClientInfo) -> TokenPair:
        """Verify credentials and open a session. Raises Throttled, InvalidCredentials."""
        email = email.strip().lower()
        try:
            await self.throttle.hit_login(email, client.ip)
        except Throttled:
            await self._event(EventType.login_throttled, None, client, email=email)
            raise
        user = await self.users.get_by_email(email)
        # Unknown emails verify against a dummy hash: both failures cost the same time.
        valid = await self.hasher.verify(password, user.password_hash if user else None)
        if user is None or not valid or not user.is_active:
            reason = "unknown_email" if user is None else "wrong_password" if not valid else "inactive"
            await self._event(
                EventType.login_failed,
                user.id if user else None,
                client,
                email=email,
                reason=reason,
            )
            raise InvalidCredentials("Incorrect email or password")
        if self.hasher.needs_rehash(user.password_hash):
            await self.users.set_password(user, password)
        pair = await self._open_session(user, uuid.uuid4(), client)
        await self._event(EventType.login_succeeded, user.id, client)
        return pair

    async def change_password(self, user: User, current: str, new: str, client: ClientInfo) -> None:
        """Set a new password and end every session. Raises WrongCurrentPassword."""
        if not await self.hasher.verify(current, user.password_hash):
            raise WrongCurrentPassword("The current password is not correct")
        await self.users.set_password(user, new)
        await self.end_all_sessions(user)
        await self._event(EventType.password_changed, user.id, client)

    async def end_all_sessions(self, user: User) -> None:
        await self.users.end_all_sessions(user)
        await self.repository.revoke_user_sessions(user.id)

    # --- refresh tokens and sessions ---------------------------------------------------------

    async def refresh(self, presented: str, client: ClientInfo) -> TokenPair:
        """Rotate a refresh token. Raises InvalidRefreshToken (and revokes the family on reuse)."""
        token = await self.repository.lock_refresh_token(opaque_token_hash(presented))
        now = datetime.now(UTC)
        if token is None or token.revoked_at is not None or token.expires_at <= now:
            raise InvalidRefreshToken("The refresh token is invalid or has expired")
        user = await self.users.get(token.user_id)
        if not user.is_active:
            raise InvalidRefreshToken("The account is deactivated")
        if token.rotated_at is not None:
            interval = self.settings.refresh_token_reuse_interval
            if now - token.rotated_at > timedelta(seconds=interval) or interval == 0:
                # A spent token presented again after the grace period: assume it was stolen.
                await self.repository.revoke_family(token.family_id)
                await self._event(
                    EventType.refresh_reuse_detected,
                    user.id,
                    client,
                    session_id=str(token.family_id),
                )
                raise InvalidRefreshToken("The refresh token was already used; the session is revoked")
            # Within the grace period (two tabs refreshing at once): a valid pair of the same family.
            return await self._open_session(user, token.family_id, client)
        pair, new_token = await self._issue(user, token.family_id, client)
        await self.repository.mark_rotated(token, new_token.id, now)
        return pair

    async def logout(self, presented: str, client: ClientInfo) -> None:
        """End the session of a refresh token; unknown or spent tokens are fine (idempotent)."""
        token = await self.repository.lock_refresh_token(opaque_token_hash(presented))
        if token is None:
            return
        if await self.repository.revoke_family(token.family_id):
            await self._event(EventType.logout, token.user_id, client, session_id=str(token.family_id))

    async def sessions(self, user: User) -> list[SessionRow]:
        return await self.repository.active_sessions(user.id)

    async def end_session(self, user: User, session_id: uuid.UUID, client: ClientInfo) -> None:
        """End one of the caller's sessions. Raises SessionNotFound."""
        if await self.repository.family_owner(session_id) != user.id:
            raise SessionNotFound(f"No session {session_id} of yours")
        if await self.repository.revoke_family(session_id):
            await self._event(EventType.session_revoked, user.id, client, session_id=str(session_id))

    async def audit_page(
        self, limit: int, cursor: str | None, user_id: uuid.UUID | None, type_: EventType | None
    ) -> tuple[list[AuthEvent], str | None]:
        """Audit events, newest first, and the cursor of the next page. Raises InvalidInput."""
        before = _decode_event_cursor(cursor) if cursor else None
        rows = await self.repository.events_page(
            limit=limit + 1, before_id=before, user_id=user_id, type_=type_.value if type_ else None
        )
        if len(rows) > limit:
            rows = rows[:limit]
            return rows, encode_cursor_bytes(str(rows[-1].id).encode())
        return rows, None

    # --- admin changes with security effects -----------------------------------------------

    async def admin_create(
        self,
        actor: User,
        client: ClientInfo,
        *,
        email: str,
        password: str,
        full_name: str | None,
        role: Role,
        is_active: bool,
    ) -> User:
        """Create an account with a role. Raises EmailTaken."""
        user = await self.users.create(email, password, full_name, role, is_active)
        await self._event(EventType.user_created, user.id, client, actor, role=role.value)
        return user

    async def admin_update(
        self,
        actor: User,
        user: User,
        client: ClientInfo,
        *,
        role: Role | None,
        is_active: bool | None,
        full_name: str | None,
        fields: set[str],
    ) -> User:
        """Change role, activity or name. Raises LastAdmin. Deactivation ends every session."""
        old_role, was_active = user.role, user.is_active
        await self.users.update(user, role=role, is_active=is_active, full_name=full_name, fields=fields)
        if user.role is not old_role:
            await self._event(
                EventType.role_changed,
                user.id,
                client,
                actor,
                old=old_role.value,
                new=user.role.value,
            )
        if was_active and not user.is_active:
            await self.end_all_sessions(user)
            await self._event(EventType.user_deactivated, user.id, client, actor)
        elif not was_active and user.is_active:
            await self._event(EventType.user_reactivated, user.id, client, actor)
        return user

    async def admin_delete(self, actor: User, user: User, client: ClientInfo) -> None:
        """Delete an account (its sessions go with it). Raises LastAdmin."""
        await self.users.delete(user)
        await self._event(EventType.user_deleted, user.id, client, actor, email=user.email)

    # --- internals ------------------------------------------------------------------------

    async def _open_session(self, user: User, family_id: uuid.UUID, client: ClientInfo) -> TokenPair:
        pair, _ = await self._issue(user, family_id, client)
        return pair

    async def _issue(
        self, user: User, family_id: uuid.UUID, client: ClientInfo
    ) -> tuple[TokenPair, RefreshToken]:
        raw = new_opaque_token()
        stored = await self.repository.add_refresh_token(
            user_id=user.id,
            family_id=family_id,
            token_hash=opaque_token_hash(raw),
            expires_at=datetime.now(UTC) + timedelta(seconds=self.settings.refresh_token_ttl_seconds),
            user_agent=client.user_agent,
            ip=client.ip,
        )
        access = self.tokens.encode_access(user.id, user.token_version, family_id)
        pair = TokenPair(access_token=access, refresh_token=raw, expires_in=self.tokens.ttl_seconds)
        return pair, stored

    async def _event(
        self,
        type_: EventType,
        user_id: uuid.UUID | None,
        client: ClientInfo,
        actor: User | None = None,
        **detail: str,
    ) -> None:
        await self.repository.add_event(
            type_.value,
            user_id=user_id,
            actor_id=actor.id if actor else None,
            ip=client.ip,
            user_agent=client.user_agent,
            detail=detail,
        )
        AUTH_EVENTS.labels(type_.value).inc()
        if outcome := _LOGIN_OUTCOMES.get(type_):
            LOGINS.labels(outcome).inc()
        elif type_ is EventType.refresh_reuse_detected:
            REFRESH_REUSE.inc()
