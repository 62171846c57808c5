"""The enqueue API other domains call: a message joins the outbox in the caller's own transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from userapi.mail.composer import MailComposer
from userapi.mail.constants import MailTemplate
from userapi.mail.exceptions import MailUnavailable
from userapi.mail.metrics import MAIL_MESSAGES
from userapi.mail.models import OutboxMessage
from userapi.mail.repository import OutboxCounts, OutboxRepository


class MailService:
    """Transactional outbox (the pattern of the same name): `enqueue` writes the rendered message
    with the caller's other writes, so a request that fails sends nothing and one that commits
    cannot lose its mail (the delivery worker sends it later, even after a crash or an SMTP outage).

    Built per request (or per CLI command) on the caller's session; never commits.
    """

    def __init__(self, repository: OutboxRepository, composer: MailComposer | None) -> None:
        """`composer` None: mail is off (MAIL_DELIVERY=off), or the caller only reads the outbox."""
        self.repository = repository
        self.composer = composer

    @classmethod
    def for_session(cls, session: AsyncSession, composer: MailComposer | None) -> MailService:
        """The service on a caller's session: its messages commit (or not) with the caller's writes."""
        return cls(OutboxRepository(session), composer)

    @property
    def available(self) -> bool:
        return self.composer is not None

    def require_available(self) -> None:
        """Raises MailUnavailable (503 `mail_unavailable`) when MAIL_DELIVERY=off."""
        if not self.available:
            raise MailUnavailable("This service sends no mail (MAIL_DELIVERY=off); this action needs mail")

    async def enqueue(self, template: MailTemplate, to: str, **context: Any) -> int | None:
        """Render the message and add it to the outbox; its outbox id (None when mail is off).

        `context` is the template's values (a link, a lifetime); it may hold a secret (a token in a
        link), which is kept only inside the stored message and never logged.
        """
        if self.composer is None:
            return None
        mail = self.composer.compose(template, to, context)
        message_id = await self.repository.add(mail)
        self.repository.after_commit(lambda: MAIL_MESSAGES.labels("queued", template.value).inc())
        return message_id

    async def enqueue_nothing(self, template: MailTemplate, to: str, **context: Any) -> None:
        """Do the work of `enqueue` (render, the INSERT statement) and store nothing.

        For answers that must not reveal whether a message went out (a password reset asked for an
        unknown address): both paths then run the same statements and take about the same time.
        """
        if self.composer is None:
            return
        mail = self.composer.compose(template, to, context)
        await self.repository.add_nothing(mail)

    async def counts(self) -> OutboxCounts:
        """Messages per status and the age of the oldest pending one."""
        return await self.repository.counts()

    async def recent(self, limit: int = 20) -> list[OutboxMessage]:
        """The newest `limit` messages, without their content."""
        return await self.repository.recent(limit)

    async def prune_batch(self, *, before: datetime, batch_size: int) -> int:
        """Delete up to `batch_size` sent or failed messages created before `before`; how many.

        Pending messages are never pruned: they have not been delivered yet.
        """
        return await self.repository.prune(before=before, batch_size=batch_size)
