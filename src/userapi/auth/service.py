"""The rules of authentication: sign-up, login, token rotation with reuse detection, and sessions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from userapi.audit.constants import EventType
from userapi.audit.service import AuditService
from userapi.auth.exceptions import (
    EmailNotVerified,
    InvalidCredentials,
    InvalidGrant,
    InvalidRefreshToken,
    SessionNotFound,
    WrongCurrentPassword,
)
from userapi.auth.models import RefreshToken
from userapi.auth.repository import AuthRepository, CurrentUserRepository, SessionRow
from userapi.auth.schemas import MfaRequired, TokenPair
from userapi.core.canonical import canonical_email_or_none, canonical_email_prefix
from userapi.core.client import ClientInfo
from userapi.core.config import Settings
from userapi.core.exceptions import AppError, InvalidToken
from userapi.core.security import (
    AccessClaims,
    PasswordHasher,
    TokenCodec,
    UnknownKeyId,
    new_opaque_token,
    opaque_token_hash,
)
from userapi.core.throttle import Throttle
from userapi.db.reads import ReadPool
from userapi.guard.constants import SecretKind
from userapi.guard.service import SecretGuard, Verdict
from userapi.users.models import User
from userapi.users.service import UserService

PASSWORD_AMR = ["pwd"]  # RFC 8176: signed in with a password only


class SecondFactor(Protocol):
    """What sign-in needs from mfa (its MfaService implements it), so auth never imports mfa."""

    async def start_challenge(self, user: User, client: ClientInfo) -> tuple[str, int]: ...

    async def verify_challenge(
        self, mfa_token: str, code: str | None, recovery_code: str | None, client: ClientInfo
    ) -> tuple[User, list[str]]: ...


@dataclass(frozen=True, slots=True)
class Principal:
    """The signed-in caller of one request: the stored account, the verified token's claims, and
    the permissions its role grants now (read with the account, never taken from the token)."""

    user: User
    claims: AccessClaims
    permissions: frozenset[str]


class Authenticator:
    """Who is calling: the access token verified, then the account, its role's permissions and the
    session read (one query).

    It holds two references and no state: built per request from the runtime, at no cost.
    """

    def __init__(self, tokens: TokenCodec, users: CurrentUserRepository) -> None:
        self.tokens = tokens
        self.users = users

    @classmethod
    def on(cls, tokens: TokenCodec, reads: ReadPool) -> Authenticator:
        return cls(tokens, CurrentUserRepository(reads))

    async def authenticate(self, access_token: str) -> Principal:
        """The caller behind an access token, read from the database. Raises InvalidToken."""
        await self.tokens.keys.maybe_refresh()  # one clock read unless the interval has passed
        try:
            claims = self.tokens.decode_access(access_token)
        except UnknownKeyId:
            # Maybe a key another process created a moment ago (rate-limited reload), else 401.
            if not await self.tokens.keys.reload_soon():
                raise
            claims = self.tokens.decode_access(access_token)
        found = await self.users.user_for_request(claims.user_id, claims.session_id, claims.stored_kid)
        if found is None:
            raise InvalidToken("The account no longer exists")
        user = found.user
        if not found.key_live:
            # Retired elsewhere (`userapi keys retire`): reload now, so this process stops
            # signing with it too, rather than at its next periodic reload.
            await self.tokens.keys.reload_soon()
            raise InvalidToken("The access token is signed with a retired key")
        if not user.is_active:
            raise InvalidToken("The account is deactivated")
        if user.token_version != claims.token_version or not found.session_live:
            raise InvalidToken("The session has ended")
        return Principal(user, claims, found.permissions)


class SessionRevoker:
    """Ends every sign-in session of a user (revokes their refresh tokens); what users' admin needs.

    Handed to the users service as its `Sessions` interface, so users never imports auth.
    """

    def __init__(self, repository: AuthRepository) -> None:
        self.repository = repository

    @classmethod
    def for_session(cls, session: AsyncSession) -> SessionRevoker:
        return cls(AuthRepository(session))

    async def revoke_user_sessions(self, user_id: uuid.UUID) -> None:
        """Revoke every live refresh token of `user_id` (idempotent)."""
        await self.repository.revoke_user_sessions(user_id)

    async def revoke_other_sessions(self, user_id: uuid.UUID, keep: uuid.UUID | None) -> None:
        """End every session of `user_id` but `keep` (the caller's own, when there is one).

        Their access tokens stop at once too: each carries its session, checked on every request.
        """
        await self.repository.revoke_user_sessions(user_id, keep)

    async def revoke_user_session(self, user_id: uuid.UUID, session_id: uuid.UUID) -> bool:
        """Revoke one live session of `user_id`; False when it is not one of theirs or already ended."""
        if await self.repository.family_owner(session_id) != user_id:
            return False
        return bool(await self.repository.revoke_family(session_id))


class AccountMail(Protocol):
    """What sign-up and password changes need from the mailed-link flows (auth.recovery implements it)."""

    async def send_verification(self, user: User, client: ClientInfo) -> None: ...

    async def password_changed(self, user: User) -> None: ...


class AuthService:
    """Sign-in, token rotation and sessions; user rows through the users service, events through audit."""

    def __init__(
        self,
        repository: AuthRepository,
        users: UserService,
        audit: AuditService,
        hasher: PasswordHasher,
        tokens: TokenCodec,
        throttle: Throttle,
        guard: SecretGuard,
        settings: Settings,
        account_mail: AccountMail,
        second_factor: SecondFactor,
    ) -> None:
        self.account_mail = account_mail
        self.second_factor = second_factor
        self.repository = repository
        self.users = users
        self.audit = audit
        self.hasher = hasher
        self.tokens = tokens
        self.throttle = throttle
        self.guard = guard
        self.settings = settings

    # --- accounts ---------------------------------------------------------------------------

    async def register(self, email: str, password: str, full_name: str | None, client: ClientInfo) -> User:
        """Create a user-role account. Raises Throttled, EmailTaken."""
        await self.throttle.hit_register(client.ip)
        user = await self.users.create(email, password, full_name)
        await self.audit.record(EventType.signup, user_id=user.id, client=client)
        await self.account_mail.send_verification(user, client)
        return user

    async def login(self, email: str, password: str, client: ClientInfo) -> TokenPair | MfaRequired:
        """Verify credentials and open a session or, for an account with TOTP on, start the second
        step (an mfa_token for verify_mfa). Raises Throttled, InvalidCredentials (401)."""
        refuse = InvalidCredentials("Incorrect email or password")
        user = await self._sign_in(email, password, client, refuse)
        if user.mfa_enabled:  # said only after the right password: MFA status is not public
            mfa_token, expires_in = await self.second_factor.start_challenge(user, client)
            return MfaRequired(
                mfa_token=mfa_token, mfa_methods=["totp", "recovery_code"], expires_in=expires_in
            )
        return await self._new_session(user, client, PASSWORD_AMR)

    async def password_grant(self, username: str, password: str, client: ClientInfo) -> TokenPair:
        """The login of the OAuth 2.0 token endpoint (RFC 6749 4.3). Raises Throttled, InvalidGrant (400),
        also for an account with a second factor, which the password grant cannot carry."""
        refuse = InvalidGrant("The username or password is incorrect")
        user = await self._sign_in(username, password, client, refuse)
        if user.mfa_enabled:
            await self.audit.record(
                EventType.login_failed, user_id=user.id, client=client, reason="mfa_required"
            )
            raise InvalidGrant(
                "A second factor is required, which the password grant cannot carry: "
                "use POST /api/v1/auth/login, then POST /api/v1/auth/mfa/verify"
            )
        return await self._new_session(user, client, PASSWORD_AMR)

    async def verify_mfa(
        self, mfa_token: str, code: str | None, recovery_code: str | None, client: ClientInfo
    ) -> TokenPair:
        """The second step of sign-in: a right code for an mfa_token opens the session.
        Raises InvalidMfaToken, InvalidCode, Throttled (mfa's errors)."""
        user, amr = await self.second_factor.verify_challenge(mfa_token, code, recovery_code, client)
        return await self._new_session(user, client, amr)

    async def change_password(self, user: User, current: str, new: str, client: ClientInfo) -> None:
        """Set a new password and end every session. Raises WeakPassword, Throttled, WrongCurrentPassword.

        The current password is checked through the guard like a sign-in: with a stolen access
        token it would otherwise be an unthrottled password oracle. The new password's policy is
        checked first, so a refused new password costs no attempt.
        """
        self.users.check_new_password(user, new)

        await self.guard.check_current_password(
            self.hasher,
            user.password_hash,
            current,
            user_id=user.id,
            client=client,
            refuse=WrongCurrentPassword("The current password is not correct"),
        )
        await self.users.set_password(user, new)
        await self.users.end_all_sessions(user)
        await self.account_mail.password_changed(user)
        await self.audit.record(EventType.password_changed, user_id=user.id, client=client)

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
                await self.audit.record(
                    EventType.refresh_reuse_detected,
                    user_id=user.id,
                    client=client,
                    session_id=str(token.family_id),
                )
                raise InvalidRefreshToken("The refresh token was already used; the session is revoked")
            # Within the grace period (two tabs refreshing at once): a valid pair of the same family.
            return await self._open_session(user, token.family_id, client, list(token.amr))
        pair, new_token = await self._issue(user, token.family_id, client, list(token.amr))
        await self.repository.mark_rotated(token, new_token.id, now)
        return pair

    async def logout(self, presented: str, client: ClientInfo) -> None:
        """End the session of a refresh token; unknown or spent tokens are fine (idempotent)."""
        token = await self.repository.lock_refresh_token(opaque_token_hash(presented))
        if token is None:
            return
        if await self.repository.revoke_family(token.family_id):
            await self.audit.record(
                EventType.logout, user_id=token.user_id, client=client, session_id=str(token.family_id)
            )

    async def sessions(self, user: User) -> list[SessionRow]:
        return await self.repository.active_sessions(user.id)

    async def end_session(self, user: User, session_id: uuid.UUID, client: ClientInfo) -> None:
        """End one of the caller's sessions. Raises SessionNotFound."""
        if await self.repository.family_owner(session_id) != user.id:
            raise SessionNotFound(f"No session {session_id} of yours")
        if await self.repository.revoke_family(session_id):
            await self.audit.record(
                EventType.session_revoked, user_id=user.id, client=client, session_id=str(session_id)
            )

    # --- internals ------------------------------------------------------------------------

    async def _sign_in(self, email: str, password: str, client: ClientInfo, refuse: AppError) -> User:
        """The account behind an email and password, checked through the guard. Raises Throttled, `refuse`.

        The address is compared, counted and recorded in its canonical form, so every spelling of
        one address (letter case, Unicode composition, A-label or U-label domain) is one account
        and one throttle key. A text that is no address matches nobody (the same refusal, never a
        422 that would say so), is still counted, and still costs a (dummy) hash check.
        """
        canonical = canonical_email_or_none(email)
        account = canonical if canonical is not None else canonical_email_prefix(email)
        signed_in: list[tuple[User, bool]] = []

        async def verify() -> Verdict:
            # Looked up only once the attempt is counted: a throttled guess costs no query.
            user = await self.users.get_by_email(canonical) if canonical is not None else None
            # Unknown emails verify against a dummy hash: both failures cost the same time.
            checked = await self.hasher.verify(password, user.password_hash if user else None)
            if user is None:
                return Verdict.failed("unknown_email")
            if not checked.valid:
                return Verdict.failed("wrong_password", user.id)
            if not user.is_active:
                return Verdict.failed("inactive", user.id)
            signed_in.append((user, checked.rehash))
            return Verdict.passed(user.id)

        await self.guard.check(
            SecretKind.password, verify, account=account, client=client, refuse=refuse, email=account
        )
        user, rehash = signed_in[0]
        # Only now, with the password right: saying it earlier would tell who has an account.
        if self.settings.require_verified_email and user.email_verified_at is None:
            await self.audit.record(
                EventType.login_failed,
                user_id=user.id,
                client=client,
                email=account,
                reason="email_not_verified",
            )
            raise EmailNotVerified("Verify your email address first: open the link we mailed you")
        if rehash:  # another cost factor, or a hash from before passwords were NFKC-normalised
            await self.users.rehash_password(user, password)
        return user

    async def _new_session(self, user: User, client: ClientInfo, amr: list[str]) -> TokenPair:
        pair = await self._open_session(user, uuid.uuid4(), client, amr)
        await self.audit.record(EventType.login_succeeded, user_id=user.id, client=client, amr=" ".join(amr))
        return pair

    async def _open_session(
        self, user: User, family_id: uuid.UUID, client: ClientInfo, amr: list[str]
    ) -> TokenPair:
        pair, _ = await self._issue(user, family_id, client, amr)
        return pair

    async def _issue(
        self, user: User, family_id: uuid.UUID, client: ClientInfo, amr: list[str]
    ) -> tuple[TokenPair, RefreshToken]:
        raw = new_opaque_token()
        stored = await self.repository.add_refresh_token(
            user_id=user.id,
            family_id=family_id,
            token_hash=opaque_token_hash(raw),
            expires_at=datetime.now(UTC) + timedelta(seconds=self.settings.refresh_token_ttl_seconds),
            user_agent=client.user_agent,
            ip=client.ip,
            amr=amr,
        )
        # Role and permissions as information for other services (RFC 9068 section 2.2.3.1 style);
        # userapi itself reads them from the database on every request, never from the token.
        # `amr` (RFC 8176): how this session signed in, e.g. ["pwd", "otp"]; also information only.
        claims = {"role": user.role, "permissions": sorted(await self.users.permissions_of(user)), "amr": amr}
        await self.tokens.keys.maybe_refresh()
        signer = self.tokens.keys.signer()
        if signer.stored and not await self.repository.signing_key_live(signer.kid):
            # Retired by another process since this one loaded its keys (`userapi keys retire`,
            # a leaked key): it must not sign one more token. One primary-key lookup per sign-in.
            await self.tokens.keys.load()
        access = self.tokens.encode_access(user.id, user.token_version, family_id, claims)
        pair = TokenPair(access_token=access, refresh_token=raw, expires_in=self.tokens.ttl_seconds)
        return pair, stored
