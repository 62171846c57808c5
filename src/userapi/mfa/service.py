"""The rules of the second factor: TOTP enrolment, recovery codes, and the mfa_token step of sign-in."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from userapi.audit.constants import EventType
from userapi.audit.service import AuditService
from userapi.core.client import ClientInfo
from userapi.core.clock import Clock
from userapi.core.config import Settings
from userapi.core.crypto import AtRestCipher
from userapi.core.exceptions import AppError
from userapi.core.security import PasswordHasher, new_opaque_token, opaque_token_hash
from userapi.guard.constants import SecretKind
from userapi.guard.service import SecretGuard, Verdict
from userapi.mfa import _codes
from userapi.mfa.constants import (
    AMR_OTP,
    AMR_PASSWORD,
    AMR_RECOVERY_CODE,
    MFA_TOKEN_MAX_ATTEMPTS,
    MFA_TOKEN_TTL_SECONDS,
    TOTP_SECRET_PURPOSE,
)
from userapi.mfa.exceptions import (
    InvalidCode,
    InvalidMfaToken,
    MfaAlreadyEnabled,
    MfaNotEnrolled,
    WrongCode,
    WrongCurrentPassword,
)
from userapi.mfa.models import TotpFactor
from userapi.mfa.repository import MfaRepository
from userapi.roles.service import Actor
from userapi.users.models import User
from userapi.users.service import UserService


class OtherSessions(Protocol):
    """What mfa needs from auth: ending a user's sessions but the caller's (auth implements it)."""

    async def revoke_other_sessions(self, user_id: uuid.UUID, keep: uuid.UUID | None) -> None: ...


@dataclass(frozen=True, slots=True)
class TotpEnrolment:
    secret: str
    otpauth_uri: str
    qr_svg: str


class MfaService:
    """TOTP (RFC 6238) and recovery codes (OWASP ASVS V2.7, V2.8). Every code and password check goes
    through `_check_code` / `_check_password`: the secret guard (throttled per account, audited on failure,
    counted in metrics."""

    def __init__(
        self,
        repository: MfaRepository,
        users: UserService,
        sessions: OtherSessions,
        audit: AuditService,
        hasher: PasswordHasher,
        guard: SecretGuard,
        settings: Settings,
        clock: Clock,
    ) -> None:
        self.repository = repository
        self.users = users
        self.sessions = sessions
        self.audit = audit
        self.hasher = hasher
        self.guard = guard
        self.settings = settings
        self.clock = clock

    @classmethod
    def for_session(
        cls,
        session: AsyncSession,
        users: UserService,
        sessions: OtherSessions,
        audit: AuditService,
        hasher: PasswordHasher,
        guard: SecretGuard,
        settings: Settings,
        clock: Clock,
    ) -> MfaService:
        return cls(MfaRepository(session), users, sessions, audit, hasher, guard, settings, clock)

    # --- enrolment (signed in) -------------------------------------------------------------

    async def enrol(self, user: User, current_password: str, client: ClientInfo) -> TotpEnrolment:
        """Start a pending TOTP enrolment (a new secret). Raises WrongCurrentPassword, Throttled,
        MfaAlreadyEnabled."""
        await self._check_password(user, current_password, client)
        factor = await self.repository.lock_factor(user.id)
        if factor is not None and factor.confirmed_at is not None:
            raise MfaAlreadyEnabled("TOTP is already on; turn it off first to enrol a new authenticator")
        secret = _codes.new_totp_secret()
        await self.repository.put_factor(user.id, self._cipher().seal(secret.encode("ascii"), str(user.id)))
        await self.audit.record(EventType.mfa_enrolment_started, user_id=user.id, client=client)
        uri = _codes.provisioning_uri(secret, user.email, self.settings.mfa_issuer)
        return TotpEnrolment(secret=secret, otpauth_uri=uri, qr_svg=_codes.qr_svg(uri))

    async def confirm(
        self, user: User, code: str, client: ClientInfo, session_id: uuid.UUID | None
    ) -> list[str]:
        """Turn TOTP on with a first code; returns the 10 recovery codes (shown once). The user's
        other sessions end: they were opened with the password alone, which may be what leaked
        (OWASP ASVS 5.0 V7.4.3: terminate other sessions after an authentication factor changes).
        Raises MfaNotEnrolled, MfaAlreadyEnabled, WrongCode, Throttled."""
        factor = await self.repository.lock_factor(user.id)
        if factor is None:
            raise MfaNotEnrolled("Start an enrolment first (POST /api/v1/users/me/mfa/totp)")
        if factor.confirmed_at is not None:
            raise MfaAlreadyEnabled("TOTP is already on")
        await self._check_code(user, factor, code, client, WrongCode("The code is not correct"))
        factor.confirmed_at = datetime.now(UTC)
        await self.users.set_mfa_enabled(user, True)
        codes = await self._new_recovery_codes(user.id)
        await self.sessions.revoke_other_sessions(user.id, keep=session_id)
        await self.audit.record(EventType.mfa_enabled, user_id=user.id, client=client)
        return codes

    async def disable(
        self, user: User, current_password: str, code: str, client: ClientInfo, session_id: uuid.UUID | None
    ) -> None:
        """Turn TOTP off, delete the recovery codes, end the user's other sessions.
        Raises WrongCurrentPassword, MfaNotEnrolled, WrongCode, Throttled."""
        factor = await self._confirmed_factor(user, current_password, code, client)
        await self.repository.delete_factor(factor.user_id)
        await self._forget(user)
        await self.sessions.revoke_other_sessions(user.id, keep=session_id)
        await self.audit.record(EventType.mfa_disabled, user_id=user.id, client=client)

    async def regenerate_recovery_codes(
        self, user: User, current_password: str, code: str, client: ClientInfo, session_id: uuid.UUID | None
    ) -> list[str]:
        """A fresh set of 10 recovery codes (the old set stops working); the other sessions end.
        Raises WrongCurrentPassword, MfaNotEnrolled, WrongCode, Throttled."""
        await self._confirmed_factor(user, current_password, code, client)
        codes = await self._new_recovery_codes(user.id)
        await self.sessions.revoke_other_sessions(user.id, keep=session_id)
        await self.audit.record(EventType.mfa_recovery_codes_regenerated, user_id=user.id, client=client)
        return codes

    async def reset(self, actor: Actor, user: User) -> bool:
        """Remove a user's second factor for support (admin or CLI): every session ends, audited.
        Returns False (and changes nothing) when the user had none. Raises MissingPermission when
        the user's role holds a permission the actor lacks."""
        await self.users.may_act_on(actor, user)
        if not await self.repository.delete_factor(user.id) and not user.mfa_enabled:
            return False
        await self._forget(user)
        await self.users.end_all_sessions(user)
        detail = {"actor": actor.label} if actor.label else {}
        await self.audit.record(
            EventType.mfa_reset, user_id=user.id, client=actor.client, actor_id=actor.user_id, **detail
        )
        return True

    # --- the second step of sign-in ---------------------------------------------------------

    async def start_challenge(self, user: User, client: ClientInfo) -> tuple[str, int]:
        """After a right password: a new mfa_token (opaque) and its lifetime in seconds."""
        raw = new_opaque_token()
        expires_at = datetime.now(UTC) + timedelta(seconds=MFA_TOKEN_TTL_SECONDS)
        await self.repository.add_challenge(user.id, opaque_token_hash(raw), user.token_version, expires_at)
        await self.audit.record(EventType.mfa_challenge_started, user_id=user.id, client=client)
        return raw, MFA_TOKEN_TTL_SECONDS

    async def verify_challenge(
        self, mfa_token: str, code: str | None, recovery_code: str | None, client: ClientInfo
    ) -> tuple[User, list[str]]:
        """The user of an mfa_token whose code (TOTP) or recovery code is right, and the session's amr.
        Raises InvalidMfaToken (unknown, expired, spent, or dead after 5 attempts), Throttled,
        InvalidCode."""
        challenge = await self.repository.lock_challenge(opaque_token_hash(mfa_token))
        now = datetime.now(UTC)
        if (
            challenge is None
            or challenge.spent_at is not None
            or challenge.expires_at <= now
            or challenge.attempts >= MFA_TOKEN_MAX_ATTEMPTS
        ):
            raise InvalidMfaToken("The mfa_token is invalid or has expired; sign in again")
        user = await self.users.get(challenge.user_id)
        if not user.is_active or user.token_version != challenge.token_version or not user.mfa_enabled:
            challenge.spent_at = now
            await self.repository.flush()
            raise InvalidMfaToken("The mfa_token is no longer valid; sign in again")
        challenge.attempts += 1
        if challenge.attempts >= MFA_TOKEN_MAX_ATTEMPTS:
            challenge.spent_at = now  # the fifth attempt is the last, right or wrong
        await self.repository.flush()
        refuse = InvalidCode(
            "The code is not correct", attempts_left=MFA_TOKEN_MAX_ATTEMPTS - challenge.attempts
        )
        if recovery_code is not None:
            await self._check_recovery_code(user, recovery_code, client, refuse)
            amr = [AMR_PASSWORD, AMR_RECOVERY_CODE]
        else:
            factor = await self.repository.lock_factor(user.id)
            if factor is None:
                raise refuse
            await self._check_code(user, factor, code or "", client, refuse)
            amr = [AMR_PASSWORD, AMR_OTP]
        challenge.spent_at = now
        await self.repository.flush()
        return user, amr

    # --- the one way a secret is checked ----------------------------------------------------

    async def _check_code(
        self, user: User, factor: TotpFactor, code: str, client: ClientInfo, refuse: AppError
    ) -> None:
        """A TOTP code (±1 step, each step once) through the secret guard (throttled per account,
        failures audited and counted). Raises Throttled, `refuse`."""
        secret = self._cipher().open(factor.secret_sealed, str(user.id)).decode("ascii")
        accepted: list[int] = []

        async def verify() -> Verdict:
            step = _codes.matching_step(secret, code, self.clock(), factor.last_used_step)
            if step is None:
                return Verdict.failed("wrong_code", user.id)
            accepted.append(step)
            return Verdict.passed(user.id)

        await self.guard.check(
            SecretKind.one_time_code,
            verify,
            account=str(user.id),
            client=client,
            refuse=refuse,
            user_id=user.id,
        )
        factor.last_used_step = accepted[0]
        await self.repository.flush()
        await self.audit.record(EventType.mfa_verified, user_id=user.id, client=client, method="totp")

    async def _check_recovery_code(self, user: User, code: str, client: ClientInfo, refuse: AppError) -> None:
        """Spend a recovery code through the secret guard. Raises Throttled, `refuse`."""

        async def verify() -> bool:
            return await self.repository.use_recovery_code(user.id, _codes.recovery_code_hash(code))

        await self.guard.check(
            SecretKind.recovery_code,
            verify,
            account=str(user.id),
            client=client,
            refuse=refuse,
            user_id=user.id,
        )
        left = await self.repository.unused_recovery_codes(user.id)
        await self.audit.record(
            EventType.mfa_recovery_code_used,
            user_id=user.id,
            client=client,
            method="recovery_code",
            codes_left=str(left),
        )

    async def _check_password(self, user: User, password: str, client: ClientInfo) -> None:
        """The current password again, for a security change. Raises Throttled, WrongCurrentPassword."""

        await self.guard.check_current_password(
            self.hasher,
            user.password_hash,
            password,
            user_id=user.id,
            client=client,
            refuse=WrongCurrentPassword("The current password is not correct"),
        )

    async def _confirmed_factor(
        self, user: User, current_password: str, code: str, client: ClientInfo
    ) -> TotpFactor:
        await self._check_password(user, current_password, client)
        factor = await self.repository.lock_factor(user.id)
        if factor is None or factor.confirmed_at is None:
            raise MfaNotEnrolled("TOTP is not on")
        await self._check_code(user, factor, code, client, WrongCode("The code is not correct"))
        return factor

    async def _new_recovery_codes(self, user_id: uuid.UUID) -> list[str]:
        codes = _codes.new_recovery_codes()
        await self.repository.replace_recovery_codes(user_id, [_codes.recovery_code_hash(c) for c in codes])
        return codes

    async def _forget(self, user: User) -> None:
        await self.repository.delete_recovery_codes(user.id)
        await self.repository.delete_challenges(user.id)
        await self.users.set_mfa_enabled(user, False)

    def _cipher(self) -> AtRestCipher:
        return AtRestCipher(self.settings.key_encryption_secret, TOTP_SECRET_PURPOSE)
