"""SQL of the mfa domain: TOTP factors, recovery codes and mfa_token challenges."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from userapi.mfa.models import MfaChallenge, RecoveryCode, TotpFactor


class MfaRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- TOTP factors ---------------------------------------------------------------------

    async def lock_factor(self, user_id: uuid.UUID) -> TotpFactor | None:
        """The user's factor, locked: two codes of one step presented at once are decided in turn."""
        stmt = select(TotpFactor).where(TotpFactor.user_id == user_id).with_for_update()
        return (await self.session.scalars(stmt)).first()

    async def put_factor(self, user_id: uuid.UUID, secret_sealed: bytes) -> TotpFactor:
        """Replace any pending factor of the user by a new pending one."""
        await self.delete_factor(user_id)
        factor = TotpFactor(user_id=user_id, secret_sealed=secret_sealed)
        self.session.add(factor)
        await self.session.flush()
        return factor

    async def delete_factor(self, user_id: uuid.UUID) -> int:
        result = await self.session.execute(delete(TotpFactor).where(TotpFactor.user_id == user_id))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def flush(self) -> None:
        await self.session.flush()

    # --- recovery codes -------------------------------------------------------------------

    async def replace_recovery_codes(self, user_id: uuid.UUID, hashes: list[bytes]) -> None:
        await self.delete_recovery_codes(user_id)
        self.session.add_all(RecoveryCode(user_id=user_id, code_hash=h) for h in hashes)
        await self.session.flush()

    async def delete_recovery_codes(self, user_id: uuid.UUID) -> None:
        await self.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))

    async def use_recovery_code(self, user_id: uuid.UUID, code_hash: bytes) -> bool:
        """Mark an unused code used, atomically (a code raced twice is spent once)."""
        result = await self.session.execute(
            update(RecoveryCode)
            .where(
                RecoveryCode.user_id == user_id,
                RecoveryCode.code_hash == code_hash,
                RecoveryCode.used_at.is_(None),
            )
            .values(used_at=func.now())
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def unused_recovery_codes(self, user_id: uuid.UUID) -> int:
        stmt = select(func.count()).where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))
        return int((await self.session.scalars(stmt)).one())

    # --- mfa_token challenges -------------------------------------------------------------

    async def add_challenge(
        self, user_id: uuid.UUID, token_hash: bytes, token_version: int, expires_at: datetime
    ) -> MfaChallenge:
        challenge = MfaChallenge(
            user_id=user_id, token_hash=token_hash, token_version=token_version, expires_at=expires_at
        )
        self.session.add(challenge)
        await self.session.flush()
        return challenge

    async def lock_challenge(self, token_hash: bytes) -> MfaChallenge | None:
        """The challenge row, locked: concurrent attempts on one mfa_token are counted one by one."""
        stmt = select(MfaChallenge).where(MfaChallenge.token_hash == token_hash).with_for_update()
        return (await self.session.scalars(stmt)).first()

    async def delete_challenges(self, user_id: uuid.UUID) -> None:
        await self.session.execute(delete(MfaChallenge).where(MfaChallenge.user_id == user_id))

    async def prune_challenges(self, before: datetime) -> int:
        result = await self.session.execute(delete(MfaChallenge).where(MfaChallenge.expires_at < before))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
