"""Many workers, one outbox: each committed message is sent exactly once (SKIP LOCKED), in-process."""

from __future__ import annotations

import asyncio
from collections import Counter

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.helpers import make_settings
from tests.fixtures.smtp_server import SmtpServer
from userapi.db.session import build_engine, build_sessionmaker
from userapi.mail.composer import MailComposer
from userapi.mail.constants import MailTemplate
from userapi.mail.repository import OutboxRepository
from userapi.mail.service import MailService
from userapi.mail.transport import build_transport
from userapi.mail.worker import DeliveryWorker

MESSAGES = 40


async def test_three_workers_on_separate_connections_send_each_message_once(
    mail_database_url: str, mail_engine: AsyncEngine, smtp: SmtpServer
) -> None:
    engine = mail_engine
    settings = make_settings(mail_database_url, mail_delivery="auto", smtp_url=smtp.url)
    composer = MailComposer.from_settings(settings)
    async with build_sessionmaker(engine)() as session:
        mail = MailService(OutboxRepository(session), composer)
        for n in range(MESSAGES):
            await mail.enqueue(
                MailTemplate.password_reset, f"many-{n}@example.com", link="x", expires_in="1 minute"
            )
        await session.commit()
    engines = [build_engine(settings, pool_size=1) for _ in range(3)]
    try:
        transport = build_transport(settings)
        assert transport is not None
        workers = [DeliveryWorker(build_sessionmaker(e), transport, settings) for e in engines]
        results = await asyncio.gather(*(w.drain() for w in workers))
        assert sum(r.sent for r in results) == MESSAGES
        assert all(r.sent for r in results), "every worker took a share (none waited on another's lock)"
        received = smtp.wait_for(MESSAGES)
        await asyncio.sleep(0.3)
        per_address = Counter(r.rcpt_tos[0] for r in smtp.received)
        assert len(received) == MESSAGES
        assert set(per_address.values()) == {1}
        assert len({r.message["Message-ID"] for r in smtp.received}) == MESSAGES
    finally:
        for e in engines:
            await e.dispose()
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM mail_outbox WHERE recipient LIKE 'many-%'"))


async def test_a_message_held_by_one_worker_does_not_stall_another(
    mail_database_url: str, mail_engine: AsyncEngine, smtp: SmtpServer
) -> None:
    settings = make_settings(mail_database_url, mail_delivery="auto", smtp_url=smtp.url)
    composer = MailComposer.from_settings(settings)
    async with build_sessionmaker(mail_engine)() as session:
        mail = MailService(OutboxRepository(session), composer)
        for n in range(3):
            await mail.enqueue(
                MailTemplate.password_reset, f"held-{n}@example.com", link="x", expires_in="1 minute"
            )
        await session.commit()
    transport = build_transport(settings)
    assert transport is not None
    other = build_engine(settings, pool_size=1)
    try:
        async with mail_engine.connect() as holder:
            # Another worker, mid-send on the oldest message, holds its row.
            await holder.execute(
                text("SELECT id FROM mail_outbox WHERE recipient = 'held-0@example.com' FOR UPDATE")
            )
            result = await asyncio.wait_for(
                DeliveryWorker(build_sessionmaker(other), transport, settings).drain(), 10
            )
            assert result.sent == 2  # the two it could take, without waiting for the held one
            await holder.rollback()
        result = await DeliveryWorker(build_sessionmaker(other), transport, settings).drain()
        assert result.sent == 1
        assert sorted(r.rcpt_tos[0] for r in smtp.wait_for(3)) == [f"held-{n}@example.com" for n in range(3)]
    finally:
        await other.dispose()
        async with mail_engine.begin() as conn:
            await conn.execute(text("DELETE FROM mail_outbox WHERE recipient LIKE 'held-%'"))
