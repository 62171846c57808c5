"""The outbox and its worker against a real SMTP server (aiosmtpd over TCP): delivery, TLS and AUTH,
retries with back-off, permanent failures, an outage, and many workers on one outbox."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from tests.fixtures.helpers import free_port, make_settings
from tests.fixtures.smtp_server import SmtpServer
from userapi.core.config import Settings
from userapi.mail.composer import MailComposer
from userapi.mail.constants import MailTemplate
from userapi.mail.repository import OutboxRepository
from userapi.mail.service import MailService
from userapi.mail.transport import build_transport
from userapi.mail.worker import DeliveryWorker, TransportDown, retry_delay

LINK = "https://app.example.com/account/reset-password?token=SECRET-TOKEN-123"


def mail_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "mail_delivery": "auto",
        "mail_retry_base_seconds": 0.05,
        "mail_retry_max_seconds": 0.2,
    }
    values.update(overrides)
    return make_settings(database_url, **values)


def mail_service(session: AsyncSession, settings: Settings) -> MailService:
    return MailService(OutboxRepository(session), MailComposer.from_settings(settings))


def worker(sessions: async_sessionmaker[AsyncSession], settings: Settings) -> DeliveryWorker:
    transport = build_transport(settings)
    assert transport is not None
    return DeliveryWorker(sessions, transport, settings)


async def enqueue(session: AsyncSession, settings: Settings, to: str, **context: Any) -> int:
    values = {"link": LINK, "expires_in": "30 minutes", **context}
    message_id = await mail_service(session, settings).enqueue(MailTemplate.password_reset, to, **values)
    assert message_id is not None
    await session.commit()
    return message_id


async def outbox_row(conn: AsyncConnection, message_id: int) -> Any:
    result = await conn.execute(text("SELECT * FROM mail_outbox WHERE id = :id"), {"id": message_id})
    return result.mappings().one()


async def test_a_queued_message_goes_out_over_smtp_with_proper_headers(
    database_url: str,
    smtp: SmtpServer,
    sessions: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    db_conn: AsyncConnection,
) -> None:
    settings = mail_settings(
        database_url,
        smtp_url=smtp.url,
        mail_from="Acme Accounts <accounts@acme.example.com>",
        product_name="Acme <Cloud>",
    )
    message_id = await enqueue(session, settings, "ada@example.com")
    assert smtp.received == []  # queued, not sent: nothing leaves before the worker runs
    stored = (await outbox_row(db_conn, message_id))["content"]
    assert b"SECRET-TOKEN-123" not in stored  # sealed at rest (AES-GCM, KEY_ENCRYPTION_SECRET)
    assert b"ada@example.com" not in stored

    result = await worker(sessions, settings).drain()

    assert (result.sent, result.retried, result.failed) == (1, 0, 0)
    (received,) = smtp.wait_for(1)
    assert received.mail_from == "accounts@acme.example.com"
    assert received.rcpt_tos == ["ada@example.com"]
    headers = received.message
    assert headers["From"] == "Acme Accounts <accounts@acme.example.com>"
    assert headers["To"] == "ada@example.com"
    assert headers["Subject"] == "Reset your Acme <Cloud> password"
    assert headers["Auto-Submitted"] == "auto-generated"
    assert re.fullmatch(r"<[^@<>\s]+@acme\.example\.com>", headers["Message-ID"])
    assert headers["Date"].datetime is not None  # a valid RFC 5322 date
    assert received.message.get_content_type() == "multipart/alternative"
    assert LINK in received.text
    assert "Acme <Cloud>" in received.text  # plain text is not escaped
    assert "Acme &lt;Cloud&gt;" in received.html  # HTML is
    assert "Acme <Cloud>" not in received.html
    assert LINK.replace("&", "&amp;") in received.html

    row = await outbox_row(db_conn, message_id)
    assert (row["status"], row["attempts"]) == ("sent", 1)
    assert row["sent_at"] is not None
    assert row["content"] is None  # the link (and its token) is erased once delivered
    assert row["message_id"] == headers["Message-ID"]


async def test_a_rolled_back_transaction_sends_nothing(
    database_url: str, smtp: SmtpServer, sessions: async_sessionmaker[AsyncSession]
) -> None:
    settings = mail_settings(database_url, smtp_url=smtp.url)
    async with sessions() as session:
        await mail_service(session, settings).enqueue(
            MailTemplate.password_reset, "gone@example.com", link=LINK, expires_in="30 minutes"
        )
        await session.rollback()  # the request failed after enqueueing
    result = await worker(sessions, settings).drain()
    assert (result.sent, result.retried, result.failed) == (0, 0, 0)
    await asyncio.sleep(0.2)
    assert smtp.received == []


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "smtps"])
async def test_tls_and_auth(
    database_url: str,
    certificate: tuple[Path, Path],
    sessions: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    implicit: bool,
) -> None:
    server = SmtpServer(
        tls=certificate, starttls=not implicit, implicit_tls=implicit, auth=("mailer", "p@ss w0rd")
    )
    server.start()
    try:
        scheme = "smtps" if implicit else "smtp"
        url = f"{scheme}://mailer:p%40ss%20w0rd@127.0.0.1:{server.port}"
        settings = mail_settings(database_url, smtp_url=url, smtp_ca_file=certificate[0])
        await enqueue(session, settings, "tls@example.com")
        result = await worker(sessions, settings).drain()
        assert result.sent == 1
        (received,) = server.wait_for(1)
        assert received.tls
        assert received.authenticated_as == "mailer"
        assert LINK in received.text
    finally:
        server.stop()


async def test_wrong_smtp_password_or_untrusted_certificate_is_retried_not_sent(
    database_url: str,
    certificate: tuple[Path, Path],
    sessions: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    db_conn: AsyncConnection,
) -> None:
    server = SmtpServer(tls=certificate, starttls=True, auth=("mailer", "right")).start()
    try:
        wrong = mail_settings(
            database_url, smtp_url=f"smtp://mailer:wrong@127.0.0.1:{server.port}", smtp_ca_file=certificate[0]
        )
        message_id = await enqueue(session, wrong, "auth@example.com")
        with pytest.raises(TransportDown, match="535"):
            await worker(sessions, wrong).drain()
        untrusted = mail_settings(database_url, smtp_url=f"smtp://mailer:right@127.0.0.1:{server.port}")
        await asyncio.sleep(0.25)  # past the back-off
        with pytest.raises(TransportDown, match=r"(?i)certificate"):
            await worker(sessions, untrusted).drain()
        row = await outbox_row(db_conn, message_id)
        assert (row["status"], row["attempts"]) == ("pending", 2)
        assert row["content"] is not None
        assert server.received == []
    finally:
        server.stop()


async def test_smtp_down_then_up_delivers_exactly_once(
    database_url: str,
    sessions: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    db_conn: AsyncConnection,
) -> None:
    port = free_port()  # nothing listens here yet
    settings = mail_settings(database_url, smtp_url=f"smtp://127.0.0.1:{port}")
    message_id = await enqueue(session, settings, "patient@example.com")
    delivery = worker(sessions, settings)
    with pytest.raises(TransportDown, match=r"(?i)refused|connect"):
        await delivery.drain()
    row = await outbox_row(db_conn, message_id)
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert row["next_attempt_at"] > row["created_at"]  # backed off, not hammering

    server = SmtpServer(port=port).start()
    try:
        result = None
        for _ in range(50):  # until the back-off has passed
            result = await delivery.drain()
            if result.sent:
                break
            await asyncio.sleep(0.05)
        assert result is not None
        assert result.sent == 1
        server.wait_for(1)
        # Nothing left to send: further drains deliver nothing twice.
        again = await delivery.drain()
        assert (again.sent, again.retried, again.failed) == (0, 0, 0)
        await asyncio.sleep(0.2)
        assert len(server.received) == 1
        assert (await outbox_row(db_conn, message_id))["attempts"] == 2
    finally:
        server.stop()


async def test_a_permanent_refusal_fails_at_once_and_a_temporary_one_is_retried_until_the_limit(
    database_url: str,
    smtp: SmtpServer,
    sessions: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    db_conn: AsyncConnection,
) -> None:
    settings = mail_settings(database_url, smtp_url=smtp.url, mail_max_attempts=3)
    bounced = await enqueue(session, settings, "bounce@example.com")
    deferred = await enqueue(session, settings, "defer@example.com")
    delivered = await enqueue(session, settings, "fine@example.com")
    delivery = worker(sessions, settings)
    totals = {"sent": 0, "retried": 0, "failed": 0}
    for _ in range(60):
        result = await delivery.drain()
        for key in totals:
            totals[key] += getattr(result, key)
        if totals["failed"] == 2:
            break
        await asyncio.sleep(0.05)
    assert totals == {"sent": 1, "retried": 2, "failed": 2}
    bounce_row, defer_row = await outbox_row(db_conn, bounced), await outbox_row(db_conn, deferred)
    assert (bounce_row["status"], bounce_row["attempts"]) == ("failed", 1)  # 5xx: never retried
    assert "550" in bounce_row["last_error"]
    assert (defer_row["status"], defer_row["attempts"]) == ("failed", 3)  # 4xx: MAIL_MAX_ATTEMPTS
    assert bounce_row["content"] is None
    assert defer_row["content"] is None
    assert (await outbox_row(db_conn, delivered))["status"] == "sent"
    assert [r.rcpt_tos for r in smtp.received] == [["fine@example.com"]]


def test_retry_delay_grows_exponentially_with_jitter_and_a_cap() -> None:
    for attempt, (low, high) in enumerate([(15, 30), (30, 60), (60, 120), (120, 240)], start=1):
        delays = {retry_delay(attempt, 30, 3600) for _ in range(50)}
        assert all(low <= d <= high for d in delays), (attempt, delays)
        assert len(delays) > 40  # jittered, not a fixed schedule
    assert all(1800 <= retry_delay(30, 30, 3600) <= 3600 for _ in range(20))


async def test_development_default_writes_eml_files_and_logs_the_path_never_the_token(
    database_url: str,
    tmp_path: Path,
    sessions: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = mail_settings(database_url, environment="development", data_dir=tmp_path)
    assert settings.mail_mode().value == "file"
    await enqueue(session, settings, "dev@example.com")
    caplog.set_level("INFO", logger="userapi.mail")
    result = await worker(sessions, settings).drain()
    assert result.sent == 1
    (path,) = (tmp_path / "mail").glob("*.eml")
    assert "SECRET-TOKEN-123" in path.read_text()  # the file is the mail, link included
    lines = [r.getMessage() for r in caplog.records]
    assert [line for line in lines if str(path) in line], lines
    assert not [line for line in lines if "SECRET-TOKEN-123" in line]


def _sample(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_metrics_count_queued_on_commit_and_every_outcome(
    database_url: str, smtp: SmtpServer, sessions: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> None:
    settings = mail_settings(database_url, smtp_url=smtp.url, mail_max_attempts=1)
    name = "userapi_mail_messages_total"
    before = {e: _sample(name, event=e, template="password_reset") for e in ("queued", "sent", "failed")}
    async with sessions() as session:
        await mail_service(session, settings).enqueue(
            MailTemplate.password_reset, "counted@example.com", link=LINK, expires_in="30 minutes"
        )
        await session.rollback()
    assert _sample(name, event="queued", template="password_reset") == before["queued"]  # rolled back
    async with sessions() as session:
        await enqueue(session, settings, "counted@example.com")
        await enqueue(session, settings, "bounce@example.com")
    assert _sample(name, event="queued", template="password_reset") == before["queued"] + 2
    delivery = worker(sessions, settings)
    await delivery.refresh_gauges()
    assert _sample("userapi_mail_pending_messages") >= 2
    await delivery.drain()
    assert _sample(name, event="sent", template="password_reset") == before["sent"] + 1
    assert _sample(name, event="failed", template="password_reset") == before["failed"] + 1
    exposed = (await client.get("/metrics")).text
    for metric in ("userapi_mail_messages_total", "userapi_mail_oldest_pending_age_seconds"):
        assert metric in exposed


async def test_a_message_sealed_under_another_key_fails_at_once_and_is_not_sent(
    database_url: str,
    smtp: SmtpServer,
    sessions: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    db_conn: AsyncConnection,
) -> None:
    before = mail_settings(database_url, smtp_url=smtp.url, key_encryption_secret="k" * 40)
    message_id = await enqueue(session, before, "rotated@example.com")
    after = mail_settings(database_url, smtp_url=smtp.url, key_encryption_secret="n" * 40)
    result = await worker(sessions, after).drain()
    assert (result.sent, result.failed) == (0, 1)
    row = await outbox_row(db_conn, message_id)
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert "KEY_ENCRYPTION_SECRET" in row["last_error"]
    assert smtp.received == []
