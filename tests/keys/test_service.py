"""Signing keys: first key, rotation timing, emergency retire, sealed private keys, public JWKs only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from joserfc import jwk as jose_jwk
from pydantic import SecretStr
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from userapi.audit.constants import EventType
from userapi.audit.models import AuthEvent
from userapi.core.config import Settings
from userapi.core.crypto import AtRestCipher
from userapi.keys.constants import KEYS_LOCK_KEY, SEALED_KEY_PURPOSE, KeyState
from userapi.keys.exceptions import KeyAlreadyRetired, KeyMaterialUnreadable, KeyNotFound, RotationPending
from userapi.keys.models import SigningKey
from userapi.keys.repository import SigningKeyRepository
from userapi.keys.service import KeyPolicy, KeyService

SECRET = SecretStr("test-key-encryption-" + "k" * 40)
POLICY = KeyPolicy(algorithm="RS256", publish_delay=600, refresh_interval=30, access_token_ttl=900)
T0 = datetime(2031, 1, 1, tzinfo=UTC)
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


@pytest.fixture
async def session(db_conn: AsyncConnection) -> AsyncIterator[AsyncSession]:
    """A session inside the test's rolled-back transaction, with no key left over from other tests."""
    maker = async_sessionmaker(bind=db_conn, expire_on_commit=False, join_transaction_mode="create_savepoint")
    async with maker() as session:
        await session.execute(text("DELETE FROM signing_keys"))
        yield session


def service(session: AsyncSession, policy: KeyPolicy = POLICY, secret: SecretStr = SECRET) -> KeyService:
    return KeyService(SigningKeyRepository(session), AtRestCipher(secret, SEALED_KEY_PURPOSE), policy)


def states(views: list[object]) -> dict[str, KeyState]:
    return {v.kid: v.state for v in views}  # type: ignore[attr-defined]


async def test_first_key_signs_at_once_and_is_created_once(session: AsyncSession) -> None:
    keys = service(session)
    first = await keys.ensure_signing_key(T0)
    assert first is not None
    assert first.activates_at == T0
    assert await keys.ensure_signing_key(T0 + timedelta(seconds=1)) is None
    assert states(await keys.overview(T0)) == {first.kid: KeyState.active}


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256", "RS256"])
async def test_stored_key_is_sealed_and_its_jwk_public(session: AsyncSession, algorithm: str) -> None:
    keys = service(session, KeyPolicy(algorithm, 600, 30, 900))
    key = await keys.ensure_signing_key(T0)
    assert key is not None
    assert key.algorithm == algorithm
    assert not PRIVATE_MEMBERS & key.public_jwk.keys()
    assert key.public_jwk["kid"] == key.kid
    assert key.public_jwk["alg"] == algorithm
    assert key.public_jwk["use"] == "sig"
    # The kid is the RFC 7638 thumbprint, computed here by another library.
    imported = jose_jwk.import_key({k: v for k, v in key.public_jwk.items() if k != "kid"})
    assert imported.thumbprint() == key.kid
    # The private key is stored sealed: no DER header of a PKCS#8 key, and it opens only for its row.
    assert key.private_key is not None
    assert b"\x30\x82" not in key.private_key[:8]
    (entry,) = await keys.entries(strict=True, now=T0)
    assert entry.signing_key is not None
    assert entry.kid == key.kid


async def test_rotation_publishes_first_then_signs_then_retires_the_old_key(session: AsyncSession) -> None:
    keys = service(session)
    old = await keys.ensure_signing_key(T0)
    assert old is not None
    new = await keys.rotate(now=T0 + timedelta(hours=1))
    activation = T0 + timedelta(hours=1, seconds=POLICY.publish_delay)
    assert new.activates_at == activation
    assert old.retires_at == activation + POLICY.retire_after
    assert POLICY.retire_after == timedelta(seconds=900 + 30 + 60)

    before = states(await keys.overview(activation - timedelta(seconds=1)))
    assert before == {old.kid: KeyState.active, new.kid: KeyState.pending}
    after = states(await keys.overview(activation))
    assert after == {old.kid: KeyState.previous, new.kid: KeyState.active}
    retired = states(await keys.overview(activation + POLICY.retire_after))
    assert retired == {old.kid: KeyState.retired, new.kid: KeyState.active}
    # Both are published (loaded) until the old one retires; then only the new one.
    assert {e.kid for e in await keys.entries(strict=True, now=activation)} == {old.kid, new.kid}
    late = activation + POLICY.retire_after
    assert {e.kid for e in await keys.entries(strict=True, now=late)} == {new.kid}


async def test_a_second_rotation_waits_for_the_pending_key(session: AsyncSession) -> None:
    keys = service(session)
    await keys.ensure_signing_key(T0)
    pending = await keys.rotate(now=T0)
    with pytest.raises(RotationPending, match=pending.kid):
        await keys.rotate(now=T0 + timedelta(seconds=10))
    later = await keys.rotate(now=pending.activates_at)  # once it signs, rotating again is fine
    assert later.kid != pending.kid


async def test_rotation_can_change_the_algorithm(session: AsyncSession) -> None:
    keys = service(session)
    await keys.ensure_signing_key(T0)
    new = await keys.rotate("EdDSA", now=T0)
    assert new.algorithm == "EdDSA"
    assert new.public_jwk["crv"] == "Ed25519"


async def test_emergency_retire_of_the_signing_key_promotes_the_pending_one(session: AsyncSession) -> None:
    keys = service(session)
    old = await keys.ensure_signing_key(T0)
    assert old is not None
    pending = await keys.rotate(now=T0)
    moment = T0 + timedelta(seconds=5)
    replacement = await keys.retire(old.kid, now=moment)
    assert replacement is not None
    assert replacement.kid == pending.kid
    assert states(await keys.overview(moment)) == {old.kid: KeyState.retired, pending.kid: KeyState.active}
    assert old.private_key is None  # the leaked key's material is destroyed
    assert old.retire_reason == "emergency"
    assert [e.kid for e in await keys.entries(strict=True, now=moment)] == [pending.kid]


async def test_emergency_retire_without_a_pending_key_creates_one(session: AsyncSession) -> None:
    keys = service(session)
    old = await keys.ensure_signing_key(T0)
    assert old is not None
    replacement = await keys.retire(old.kid, now=T0)
    assert replacement is not None
    assert replacement.kid != old.kid
    assert replacement.activates_at == T0
    with pytest.raises(KeyAlreadyRetired):
        await keys.retire(old.kid, now=T0)
    with pytest.raises(KeyNotFound):
        await keys.retire("../../etc/passwd", now=T0)


async def test_retiring_a_pending_key_keeps_the_signer(session: AsyncSession) -> None:
    keys = service(session)
    current = await keys.ensure_signing_key(T0)
    assert current is not None
    pending = await keys.rotate(now=T0)
    assert await keys.retire(pending.kid, now=T0) is None
    assert states(await keys.overview(T0)) == {current.kid: KeyState.active, pending.kid: KeyState.retired}


async def test_a_different_secret_is_one_clear_error_at_start(session: AsyncSession) -> None:
    await service(session).ensure_signing_key(T0)
    other = service(session, secret=SecretStr("another-" + "s" * 40))
    with pytest.raises(KeyMaterialUnreadable, match="KEY_ENCRYPTION_SECRET is not the one"):
        await other.entries(strict=True, now=T0)
    # A reload in a running process keeps the key for verification and cannot sign with it.
    (entry,) = await other.entries(strict=False, now=T0)
    assert entry.signing_key is None


async def test_concurrent_first_start_creates_one_key(engine: AsyncEngine) -> None:
    """Two replicas starting together: the advisory lock lets exactly one create the first key."""
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM signing_keys"))
    maker = async_sessionmaker(engine, expire_on_commit=False)

    async def start() -> SigningKey | None:
        async with maker() as session, session.begin():
            return await service(session).ensure_signing_key()

    try:
        created = await asyncio.gather(*(start() for _ in range(4)))
        assert len([k for k in created if k is not None]) == 1
        async with engine.connect() as conn:
            assert await conn.scalar(text("SELECT count(*) FROM signing_keys")) == 1
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM signing_keys"))


async def test_start_up_with_a_signing_key_does_not_wait_for_the_keys_lock(engine: AsyncEngine) -> None:
    """Every start of every replica asks for a key: while one exists, it must not queue behind a
    transaction holding the keys lock (a rotation in progress, another process's start)."""
    maker = async_sessionmaker(engine, expire_on_commit=False)

    async def start() -> SigningKey | None:
        async with maker() as session, session.begin():
            return await service(session).ensure_signing_key()

    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM signing_keys"))
    try:
        assert await start() is not None
        async with engine.connect() as holder:
            await holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": KEYS_LOCK_KEY})
            try:
                # Were the lock taken first, this would wait for the holder: the timeout fails it.
                assert await asyncio.wait_for(start(), 5) is None
            finally:
                await holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": KEYS_LOCK_KEY})
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM signing_keys"))


async def test_every_key_change_is_in_the_audit_trail(session: AsyncSession, settings: Settings) -> None:
    """First key, rotation and emergency retire each write one event naming the kid, no key material."""
    keys = KeyService.build(session, settings)
    first = await keys.ensure_signing_key(T0)
    assert first is not None
    pending = await keys.rotate(now=T0 + timedelta(seconds=1))
    await keys.retire(first.kid, now=T0 + timedelta(seconds=2))
    rows = (
        await session.execute(
            select(AuthEvent.type, AuthEvent.detail, AuthEvent.user_id)
            .where(AuthEvent.detail["kid"].astext.in_([first.kid, pending.kid]))
            .order_by(AuthEvent.id)
        )
    ).all()
    assert [(r.type, r.detail["kid"]) for r in rows] == [
        (EventType.signing_key_created, first.kid),
        (EventType.signing_key_rotated, pending.kid),
        (EventType.signing_key_retired, first.kid),
    ]
    assert all(r.user_id is None and r.detail["algorithm"] == "RS256" for r in rows)
    assert not PRIVATE_MEMBERS & set().union(*(r.detail.keys() for r in rows))
