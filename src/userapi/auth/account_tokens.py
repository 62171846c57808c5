"""Mailed one-time tokens: made, checked and retired here and nowhere else (one place to guard them)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from userapi.audit.constants import EventType
from userapi.audit.service import AuditService
from userapi.auth.constants import TokenPurpose
from userapi.auth.exceptions import InvalidAccountToken
from userapi.auth.repository import AccountTokenRepository
from userapi.core.client import ClientInfo
from userapi.core.security import new_opaque_token, opaque_token_hash
from userapi.guard.constants import SecretKind
from userapi.guard.service import SecretGuard, Verdict

_REFUSAL = "The link is invalid, already used, or expired; ask for a new one"
# Never an account's id (uuid_generate_v4 cannot make it): what a decoy token is "for".
_NOBODY = uuid.UUID(int=0)


@dataclass(frozen=True, slots=True)
class SpentToken:
    """What a valid token said: whose it was and the address it was mailed to."""

    user_id: uuid.UUID
    email: str
    purpose: TokenPurpose


class AccountTokens:
    """Opaque random tokens (256 bits, base64url) stored only as their SHA-256, bound to one
    purpose and one address, spent on first use, expiring after their purpose's TTL (OWASP ASVS
    V2.5 / Forgot Password Cheat Sheet). Issuing one retires the user's older ones of the purpose.

    Every check runs through `spend`, and `spend` through the secret guard (kind `mailed_token`):
    counted per client IP before the lookup, each failure audited with its reason, all counted.
    """

    def __init__(self, repository: AccountTokenRepository, guard: SecretGuard, audit: AuditService) -> None:
        self.repository = repository
        self.guard = guard
        self.audit = audit

    async def issue(
        self, user_id: uuid.UUID, purpose: TokenPurpose, email: str, ttl_seconds: int, client: ClientInfo
    ) -> str:
        """A new token for `email` (the raw value, to be mailed; only its hash is stored)."""
        raw = new_opaque_token()
        await self.repository.retire(user_id, [purpose.value])
        await self.repository.add(self._row(user_id, purpose, raw, email, ttl_seconds, client))
        return raw

    async def issue_nothing(
        self, purpose: TokenPurpose, email: str, ttl_seconds: int, client: ClientInfo
    ) -> str:
        """The work of `issue` (the same statements, a random value) for no account; stores nothing.

        So an answer for an unknown address costs what one for a known address costs.
        """
        raw = new_opaque_token()
        await self.repository.retire(_NOBODY, [purpose.value])
        await self.repository.add_nothing(self._row(_NOBODY, purpose, raw, email, ttl_seconds, client))
        return raw

    async def spend(self, presented: str, purpose: TokenPurpose, client: ClientInfo) -> SpentToken:
        """Use a token up. Raises Throttled, InvalidAccountToken (unknown, spent, retired, expired,
        or of another purpose: one answer for all, the reason only in the audit trail)."""
        found: list[SpentToken] = []

        async def verify() -> Verdict:
            # Looked up only once the attempt is counted.
            token = await self.repository.lock(opaque_token_hash(presented))
            if token is None:
                return Verdict.failed("unknown")
            reason = None
            if token.purpose != purpose.value:
                reason = "wrong_purpose"
            elif token.used_at is not None:
                reason = "spent"
            elif token.revoked_at is not None:
                reason = "retired"
            elif token.expires_at <= datetime.now(UTC):
                reason = "expired"
            if reason is not None:
                return Verdict.failed(reason, token.user_id)
            await self.repository.mark_used(token)
            found.append(SpentToken(user_id=token.user_id, email=token.email, purpose=purpose))
            return Verdict.passed(token.user_id)

        await self.guard.check(
            SecretKind.mailed_token,
            verify,
            account=None,
            client=client,
            refuse=InvalidAccountToken(_REFUSAL),
            purpose=purpose.value,
        )
        return found[0]

    async def reject(self, spent: SpentToken, reason: str, client: ClientInfo) -> InvalidAccountToken:
        """A token valid in itself that its flow refuses (the account changed since): audited."""
        await self.audit.record(
            EventType.account_token_rejected,
            user_id=spent.user_id,
            client=client,
            purpose=spent.purpose.value,
            reason=reason,
        )
        return InvalidAccountToken(_REFUSAL)

    async def retire(self, user_id: uuid.UUID, *purposes: TokenPurpose) -> None:
        """Revoke the user's outstanding tokens of these purposes (a password change, an address change)."""
        await self.repository.retire(user_id, [p.value for p in purposes])

    @staticmethod
    def _row(
        user_id: uuid.UUID, purpose: TokenPurpose, raw: str, email: str, ttl_seconds: int, client: ClientInfo
    ) -> dict[str, object]:
        return {
            "user_id": user_id,
            "purpose": purpose.value,
            "token_hash": opaque_token_hash(raw),
            "email": email,
            "expires_at": datetime.now(UTC) + timedelta(seconds=ttl_seconds),
            "ip": client.ip,
        }
