"""The delivery worker: drains the outbox over a transport, one locked message per transaction."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from userapi.core.config import Settings
from userapi.core.crypto import SealedDataError
from userapi.db.listen import Listener
from userapi.mail.composer import outbox_cipher
from userapi.mail.exceptions import DeliveryError
from userapi.mail.metrics import MAIL_MESSAGES, MAIL_OLDEST_PENDING_AGE, MAIL_PENDING
from userapi.mail.models import OutboxMessage
from userapi.mail.repository import OutboxRepository
from userapi.mail.transport import Connection, Transport

logger = logging.getLogger("userapi.mail")


def retry_delay(attempt: int, base: float, cap: float) -> float:
    """Seconds before attempt `attempt + 1`: exponential (base * 2^(attempt-1), at most `cap`) with
    "equal jitter" (half fixed, half random), so retries of many messages spread out instead of
    hitting a recovering server together, and no retry comes sooner than half its step."""
    step = min(cap, base * 2.0 ** max(0, attempt - 1))
    return step / 2 + random.uniform(0, step / 2)


@dataclass
class DrainResult:
    sent: int = 0
    retried: int = 0
    failed: int = 0


class TransportDown(Exception):
    """The server could not be reached (or refused the session): stop this batch and back off."""


class DeliveryWorker:
    """One per `userapi serve` process. Many run safely against one outbox: each message is
    claimed with `SELECT ... FOR UPDATE SKIP LOCKED` and sent while its row is locked, and its
    outcome is committed with the lock's release. A crash mid-send rolls the claim back, so the
    message is sent again later (at-least-once; the fixed Message-ID lets receivers deduplicate).
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        transport: Transport,
        settings: Settings,
        listen_dsn: str | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.transport = transport
        self.cipher = outbox_cipher(settings)
        self.max_attempts = settings.mail_max_attempts
        self.base = settings.mail_retry_base_seconds
        self.cap = settings.mail_retry_max_seconds
        self.poll = settings.mail_poll_seconds
        self.wake = asyncio.Event()
        self.listener = Listener(listen_dsn, "mail_outbox", self.wake) if listen_dsn else None
        self._stopping = asyncio.Event()
        self._transport_failures = 0

    async def drain(self) -> DrainResult:
        """Deliver every due message, one transaction each; returns what happened.

        Raises TransportDown when the server cannot be reached (the message in hand is
        rescheduled first).
        """
        result = DrainResult()
        async with AsyncExitStack() as stack:
            connection: Connection | None = None
            while not self._stopping.is_set():
                down: DeliveryError | None = None
                async with self.sessionmaker() as session, session.begin():
                    repository = OutboxRepository(session)
                    message = await repository.claim_due()
                    if message is None:
                        break
                    try:
                        content = self._open(message)
                        if connection is None:
                            connection = await stack.enter_async_context(self.transport.connect())
                            self._transport_failures = 0
                        await connection.send(message, content)
                    except DeliveryError as exc:
                        outcome = await self._reschedule(repository, message, exc)
                        down = exc if exc.transport else None
                    else:
                        await repository.mark_sent(message)
                        outcome = "sent"
                # Counted once the outcome is committed.
                MAIL_MESSAGES.labels(outcome, message.template).inc()
                setattr(result, outcome, getattr(result, outcome) + 1)
                if down is not None:
                    raise TransportDown(down.reason)
        return result

    def _open(self, message: OutboxMessage) -> bytes:
        """The message as sent. Raises DeliveryError (permanent) if it cannot be opened: sealed
        under another KEY_ENCRYPTION_SECRET, or altered; no retry can change that."""
        if message.content is None:
            raise DeliveryError("the stored message has no content", permanent=True)
        try:
            return self.cipher.open(message.content, message.message_id)
        except SealedDataError as exc:
            raise DeliveryError(str(exc), permanent=True) from None

    async def _reschedule(
        self, repository: OutboxRepository, message: OutboxMessage, exc: DeliveryError
    ) -> str:
        attempt = message.attempts + 1
        if exc.permanent or attempt >= self.max_attempts:
            await repository.mark_failed(message, exc.reason)
            why = "permanent failure" if exc.permanent else f"{attempt} attempts"
            logger.error(
                "mail failed id=%s template=%s (%s): %s", message.id, message.template, why, exc.reason
            )
            return "failed"
        delay = retry_delay(attempt, self.base, self.cap)
        await repository.mark_retry(message, exc.reason, timedelta(seconds=delay))
        logger.warning(
            "mail attempt %s/%s failed id=%s template=%s, retry in %.1f s: %s",
            attempt,
            self.max_attempts,
            message.id,
            message.template,
            delay,
            exc.reason,
        )
        return "retried"

    async def refresh_gauges(self) -> None:
        async with self.sessionmaker() as session:
            counts = await OutboxRepository(session).counts()
        MAIL_PENDING.set(counts.pending)
        MAIL_OLDEST_PENDING_AGE.set(counts.oldest_pending_age or 0.0)

    async def run(self) -> None:
        """Drain on every NOTIFY and every MAIL_POLL_SECONDS until `stop()`; never raises."""
        while not self._stopping.is_set():
            self.wake.clear()
            pause, wakeable = self.poll, True
            try:
                if self.listener is not None:
                    await self.listener.ensure()
                await self.drain()
                await self.refresh_gauges()
            except TransportDown:
                # New mail must not hammer a server that is down: wait out the back-off.
                self._transport_failures += 1
                pause, wakeable = retry_delay(self._transport_failures, self.base, self.cap), False
            except Exception as exc:  # the database away, a bug: keep the worker alive, say why
                first = (str(exc).splitlines() or [""])[0]
                logger.warning("mail worker: %s: %s", type(exc).__name__, first[:200])
            await self._sleep(pause, wakeable=wakeable)
        if self.listener is not None:
            await self.listener.close()

    async def _sleep(self, seconds: float, *, wakeable: bool) -> None:
        waits = [asyncio.ensure_future(self._stopping.wait())]
        if wakeable:
            waits.append(asyncio.ensure_future(self.wake.wait()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()

    async def stop(self, task: asyncio.Task[None], grace: float = 10.0) -> None:
        """Let the message in hand finish (up to `grace` seconds), then end the task."""
        self._stopping.set()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), timeout=grace)
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
