"""SQL for the mail outbox: enqueue, claim the next due message (SKIP LOCKED), record outcomes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, event, func, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from userapi.mail.composer import ComposedMail
from userapi.mail.constants import OutboxStatus
from userapi.mail.models import OutboxMessage


@dataclass(frozen=True, slots=True)
class OutboxCounts:
    """The outbox at a glance: messages per status, and the age of the oldest pending one (seconds)."""

    pending: int
    sent: int
    failed: int
    oldest_pending_age: float | None


class OutboxRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def _values(self, mail: ComposedMail) -> dict[str, object]:
        return {
            "template": mail.template.value,
            "recipient": mail.recipient,
            "message_id": mail.message_id,
            "content": mail.content,
        }

    async def add(self, mail: ComposedMail) -> int:
        """Insert a pending message in the caller's transaction; its id."""
        stmt = insert(OutboxMessage).values(**self._values(mail)).returning(OutboxMessage.id)
        return int((await self.session.execute(stmt)).scalar_one())

    async def add_nothing(self, mail: ComposedMail) -> None:
        """The same INSERT, fed by a SELECT that yields no row: costs what `add` costs, stores nothing.

        Used where answering without the insert would reveal something (an unknown address).
        """
        values = self._values(mail)
        source = select(*(literal(v).label(k) for k, v in values.items())).where(literal(False))
        stmt = insert(OutboxMessage).from_select(list(values), source).returning(OutboxMessage.id)
        (await self.session.execute(stmt)).all()

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the caller's transaction commits (never if it rolls back)."""
        event.listen(self.session.sync_session, "after_commit", lambda _s: callback(), once=True)

    async def claim_due(self) -> OutboxMessage | None:
        """The oldest due pending message, locked for this transaction; None when there is none.

        SKIP LOCKED: a message another worker holds is passed over, not waited for, so any
        number of workers drain one outbox without sending anything twice.
        """
        stmt = (
            select(OutboxMessage)
            .where(OutboxMessage.status == OutboxStatus.pending.value)
            # statement_timestamp(), not now(): now() is the transaction's start, frozen in a
            # long transaction; this one is stable within a statement, so the index still serves.
            .where(OutboxMessage.next_attempt_at <= func.statement_timestamp())
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        return (await self.session.scalars(stmt)).first()

    async def mark_sent(self, message: OutboxMessage) -> None:
        """Delivered: the content (which holds the link) is erased."""
        await self._set(
            message, status=OutboxStatus.sent.value, sent_at=func.statement_timestamp(), content=None
        )

    async def mark_retry(self, message: OutboxMessage, reason: str, delay: timedelta) -> None:
        await self._set(message, last_error=reason[:500], next_attempt_at=func.statement_timestamp() + delay)

    async def mark_failed(self, message: OutboxMessage, reason: str) -> None:
        """Given up: kept for `mail status` and the metrics; the content is erased."""
        await self._set(message, status=OutboxStatus.failed.value, last_error=reason[:500], content=None)

    async def _set(self, message: OutboxMessage, **values: object) -> None:
        # Every outcome is one attempt more, recorded with it in one statement.
        values["attempts"] = OutboxMessage.attempts + 1
        await self.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == message.id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )

    async def counts(self) -> OutboxCounts:
        by_status = dict(
            (
                await self.session.execute(
                    select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
                )
            ).all()
        )
        oldest: datetime | None = (
            await self.session.execute(
                select(func.min(OutboxMessage.created_at)).where(
                    OutboxMessage.status == OutboxStatus.pending.value
                )
            )
        ).scalar_one()
        now = (await self.session.execute(select(func.statement_timestamp()))).scalar_one()
        return OutboxCounts(
            pending=int(by_status.get(OutboxStatus.pending.value, 0)),
            sent=int(by_status.get(OutboxStatus.sent.value, 0)),
            failed=int(by_status.get(OutboxStatus.failed.value, 0)),
            oldest_pending_age=(now - oldest).total_seconds() if oldest else None,
        )

    async def recent(self, limit: int) -> list[OutboxMessage]:
        """The newest messages (without their content), for `mail status`."""
        stmt = (
            select(OutboxMessage)
            .options(defer(OutboxMessage.content, raiseload=True))
            .order_by(OutboxMessage.id.desc())
            .limit(limit)
        )
        return list(await self.session.scalars(stmt))

    async def prune(self, *, before: datetime, batch_size: int) -> int:
        """Delete one batch of sent or failed messages created before `before`; how many."""
        doomed = (
            select(OutboxMessage.id)
            .where(OutboxMessage.status != OutboxStatus.pending.value, OutboxMessage.created_at < before)
            .limit(batch_size)
            .with_for_update(skip_locked=True)
        )
        result = await self.session.execute(
            delete(OutboxMessage)
            .where(OutboxMessage.id.in_(doomed.scalar_subquery()))
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
