"""The rules of signing keys: the first key, rotation with a publish delay, retirement, the loaded key set."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from userapi.audit.constants import EventType
from userapi.audit.service import AuditService
from userapi.core.config import Settings
from userapi.core.crypto import AtRestCipher, SealedDataError
from userapi.core.keyring import KeyEntry, Loader
from userapi.keys.constants import RETIRE_LEEWAY_SECONDS, SEALED_KEY_PURPOSE, KeyState
from userapi.keys.exceptions import KeyAlreadyRetired, KeyMaterialUnreadable, KeyNotFound, RotationPending
from userapi.keys.material import (
    generate_private_key,
    private_key_from_der,
    private_key_to_der,
    public_jwk,
    public_key_from_jwk,
)
from userapi.keys.models import SigningKey
from userapi.keys.repository import SigningKeyRepository

logger = logging.getLogger(__name__)


def key_cipher(settings: Settings) -> AtRestCipher:
    """The at-rest cipher for private signing keys (HKDF purpose "signing-key")."""
    return AtRestCipher(settings.key_encryption_secret, SEALED_KEY_PURPOSE)


@dataclass(frozen=True)
class KeyPolicy:
    """The timing rules, in seconds (from Settings: JWT_ALGORITHM, KEYS_*, ACCESS_TOKEN_TTL_SECONDS)."""

    algorithm: str
    publish_delay: int
    refresh_interval: int
    access_token_ttl: int

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyPolicy:
        return cls(
            algorithm=settings.jwt_algorithm,
            publish_delay=settings.keys_publish_delay_seconds,
            refresh_interval=settings.keys_refresh_seconds,
            access_token_ttl=settings.access_token_ttl_seconds,
        )

    @property
    def retire_after(self) -> timedelta:
        """From a successor's activation until the superseded key's last token has expired.

        Every process switches signer at the successor's activation (it loaded the successor at
        least one refresh interval before); the last token the old key signed lives one access
        TTL; the leeway covers clock skew between hosts.
        """
        return timedelta(seconds=self.access_token_ttl + self.refresh_interval + RETIRE_LEEWAY_SECONDS)


@dataclass(frozen=True)
class KeyView:
    kid: str
    algorithm: str
    state: KeyState
    created_at: datetime
    activates_at: datetime
    retires_at: datetime | None
    retire_reason: str | None


def _retired(key: SigningKey, now: datetime) -> bool:
    return key.retires_at is not None and key.retires_at <= now


def _signer(keys: list[SigningKey], now: datetime) -> SigningKey | None:
    """The key that signs at `now`: the newest activated, unretired key with private material."""
    usable = [k for k in keys if k.private_key is not None and k.activates_at <= now and not _retired(k, now)]
    return max(usable, key=lambda k: (k.activates_at, k.kid), default=None)


def _state(key: SigningKey, signer: SigningKey | None, now: datetime) -> KeyState:
    if _retired(key, now):
        return KeyState.retired
    if key.activates_at > now:
        return KeyState.pending
    return KeyState.active if signer is not None and key.kid == signer.kid else KeyState.previous


class KeyService:
    """Creates, rotates and retires signing keys. Never commits: the caller's session scope does.

    Every change takes the keys advisory lock first, so concurrent processes (replicas starting
    together, two operators rotating) change the key set one after the other.
    """

    def __init__(
        self,
        repository: SigningKeyRepository,
        cipher: AtRestCipher,
        policy: KeyPolicy,
        audit: AuditService | None = None,
    ) -> None:
        if cipher.purpose != SEALED_KEY_PURPOSE:
            raise ValueError(f"signing keys are sealed with the {SEALED_KEY_PURPOSE!r} cipher")
        self.repository = repository
        self.cipher = cipher
        self.policy = policy
        self.audit = audit

    @classmethod
    def build(cls, session: AsyncSession, settings: Settings) -> KeyService:
        """The service on a session, with the cipher and policy from settings; every change is
        recorded in the audit trail in the same transaction (OWASP ASVS V7.2)."""
        return cls(
            SigningKeyRepository(session),
            key_cipher(settings),
            KeyPolicy.from_settings(settings),
            AuditService.for_session(session),
        )

    async def ensure_signing_key(self, now: datetime | None = None) -> SigningKey | None:
        """Create the first key (active at once) when no key can sign; returns it, or None.

        Checks first without the lock: every start-up of every replica calls this, and the
        lock would make it wait on any open transaction holding it (a rotation in progress).
        Only when no key can sign is the check repeated under the lock.
        """
        if _signer(await self.repository.all(), now or datetime.now(UTC)) is not None:
            return None
        await self.repository.lock()
        # Read after the lock: a time taken before it can precede the activation of a key another
        # process created meanwhile, which would then look not yet active (and get a twin).
        now = now or datetime.now(UTC)
        keys = await self.repository.all()
        if _signer(keys, now) is not None:
            return None
        key = await self._create(now, activates_at=now, algorithm=self.policy.algorithm)
        await self._record(EventType.signing_key_created, key, reason="first")
        return key

    async def rotate(self, algorithm: str | None = None, now: datetime | None = None) -> SigningKey:
        """Publish a new key that signs after the publish delay; schedule the current keys' retirement.

        Raises RotationPending when a published key has not started signing yet.
        """
        await self.repository.lock()
        now = now or datetime.now(UTC)  # after the lock (see ensure_signing_key)
        keys = await self.repository.all()
        if pending := [k for k in keys if k.activates_at > now and not _retired(k, now)]:
            raise RotationPending(
                f"key {pending[0].kid} starts signing at {pending[0].activates_at.isoformat()}; "
                "rotate again after that"
            )
        # Nothing signs (all retired): there is nothing to wait for.
        delay = timedelta(seconds=self.policy.publish_delay) if _signer(keys, now) else timedelta(0)
        new = await self._create(now, activates_at=now + delay, algorithm=algorithm or self.policy.algorithm)
        for key in keys:
            if key.retires_at is None:
                key.retires_at = new.activates_at + self.policy.retire_after
                key.retire_reason = "rotated"
        await self.repository.destroy_retired_material(now)
        await self.repository.flush()
        await self._record(EventType.signing_key_rotated, new, activates_at=new.activates_at.isoformat())
        return new

    async def retire(self, kid: str, now: datetime | None = None) -> SigningKey | None:
        """Retire a key at once (a leaked key): unpublished, refused, its private key destroyed.

        When it was the signing key, the pending key (if any) signs from now on, else a new key
        is created that signs at once; that key is returned. Raises KeyNotFound, KeyAlreadyRetired.
        """
        await self.repository.lock()
        now = now or datetime.now(UTC)  # after the lock (see ensure_signing_key)
        keys = await self.repository.all()
        key = next((k for k in keys if k.kid == kid), None)
        if key is None:
            raise KeyNotFound(f"No signing key {kid!r}")
        if _retired(key, now):
            raise KeyAlreadyRetired(f"Key {kid} was retired at {key.retires_at}")
        was_signer = (signer := _signer(keys, now)) is not None and signer.kid == kid
        if key.activates_at > now:
            key.activates_at = now
        key.retires_at, key.retire_reason, key.private_key = now, "emergency", None
        await self.repository.flush()
        await self._record(EventType.signing_key_retired, key, reason="emergency")
        if not was_signer:
            return None
        pending = [k for k in keys if k.activates_at > now and not _retired(k, now)]
        if pending:
            replacement = min(pending, key=lambda k: k.activates_at)
            replacement.activates_at = now
            await self.repository.flush()
            return replacement
        replacement = await self._create(now, activates_at=now, algorithm=self.policy.algorithm)
        await self._record(EventType.signing_key_created, replacement, reason="replaces_retired")
        return replacement

    async def overview(self, now: datetime | None = None) -> list[KeyView]:
        """Every key, oldest first, with its state at `now`."""
        now = now or datetime.now(UTC)
        keys = await self.repository.all()
        signer = _signer(keys, now)
        return [
            KeyView(
                k.kid,
                k.algorithm,
                _state(k, signer, now),
                k.created_at,
                k.activates_at,
                k.retires_at,
                k.retire_reason,
            )
            for k in keys
        ]

    async def entries(self, *, strict: bool, now: datetime | None = None) -> list[KeyEntry]:
        """The unretired keys as the token codec holds them (private keys opened).

        strict (start-up): a key that does not open raises KeyMaterialUnreadable, one line for the
        operator. Not strict (periodic reload): such a key is kept for verification only, and logged.
        """
        now = now or datetime.now(UTC)
        entries = []
        for key in await self.repository.unretired(now):
            private = None
            if key.private_key is not None:
                try:
                    private = private_key_from_der(self.cipher.open(key.private_key, key.kid))
                except (SealedDataError, ValueError) as exc:
                    if strict:
                        raise KeyMaterialUnreadable(f"signing key {key.kid}: {exc}") from None
                    logger.error("signing key %s cannot be opened; verifying only", key.kid)
            entries.append(
                KeyEntry(
                    kid=key.kid,
                    algorithm=key.algorithm,
                    verify_key=public_key_from_jwk(key.public_jwk, key.algorithm),
                    signing_key=private,
                    activates_at=key.activates_at.timestamp(),
                    retires_at=key.retires_at.timestamp() if key.retires_at else None,
                    public_jwk=key.public_jwk,
                )
            )
        return entries

    async def _create(self, now: datetime, *, activates_at: datetime, algorithm: str) -> SigningKey:
        private = generate_private_key(algorithm)
        jwk = public_jwk(private, algorithm)
        sealed = self.cipher.seal(private_key_to_der(private), jwk["kid"])
        key = SigningKey(
            kid=jwk["kid"],
            algorithm=algorithm,
            public_jwk=jwk,
            private_key=sealed,
            created_at=now,
            activates_at=activates_at,
        )
        return await self.repository.add(key)

    async def _record(self, event: EventType, key: SigningKey, **detail: str) -> None:
        # Key changes are made by operators (the CLI, start-up), never on behalf of a user.
        if self.audit is not None:
            detail = {"kid": key.kid, "algorithm": key.algorithm, **detail}
            await self.audit.record(event, user_id=None, client=None, actor_id=None, **detail)


def key_loader(sessions: Callable[[], async_sessionmaker[AsyncSession]], settings: Settings) -> Loader:
    """The key ring's loader: reads the unretired keys in a short transaction of its own.

    The first call is the process's start: it creates the first key when none can sign (not in
    HS256 mode, which signs with JWT_SECRET) and refuses keys that do not open (one clear
    KeyMaterialUnreadable). Later calls (periodic reloads) keep such keys for verification only.
    `sessions` is called each time, so tests can point the app at their own sessionmaker.
    """
    started = False

    async def load() -> list[KeyEntry]:
        nonlocal started
        async with sessions()() as session, session.begin():
            keys = KeyService.build(session, settings)
            if not started and settings.jwt_algorithm != "HS256":
                await keys.ensure_signing_key()
            entries = await keys.entries(strict=not started)
        started = True
        return entries

    return load
