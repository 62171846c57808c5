"""SQL for the signing_keys table: the only place its statements are built."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from userapi.keys.constants import KEYS_LOCK_KEY
from userapi.keys.models import SigningKey


class SigningKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock(self) -> None:
        """Serialise key changes across processes until this transaction ends (advisory lock)."""
        await self.session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": KEYS_LOCK_KEY})

    async def all(self) -> list[SigningKey]:
        stmt = select(SigningKey).order_by(SigningKey.activates_at, SigningKey.kid)
        return list((await self.session.scalars(stmt)).all())

    async def unretired(self, now: datetime) -> list[SigningKey]:
        stmt = select(SigningKey).where(or_(SigningKey.retires_at.is_(None), SigningKey.retires_at > now))
        return list((await self.session.scalars(stmt)).all())

    async def get(self, kid: str) -> SigningKey | None:
        return await self.session.get(SigningKey, kid)

    async def add(self, key: SigningKey) -> SigningKey:
        self.session.add(key)
        await self.session.flush()
        return key

    async def destroy_retired_material(self, now: datetime) -> int:
        """Drop the sealed private keys of keys whose retirement time has passed."""
        result = await self.session.execute(
            update(SigningKey)
            .where(SigningKey.retires_at <= now, SigningKey.private_key.is_not(None))
            .values(private_key=None)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def flush(self) -> None:
        await self.session.flush()
