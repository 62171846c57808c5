"""Delivery by real `userapi serve` processes: two of them drain one outbox with no duplicate, a
LISTEN/NOTIFY wake-up delivers at once, `userapi mail status` reports, production refuses no SMTP_URL."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.helpers import (
    API,
    PASSWORD,
    TEST_SECRET,
    make_settings,
    run_cli,
    running_server,
    server_env,
)
from tests.fixtures.smtp_server import SmtpServer
from userapi.db.session import build_sessionmaker
from userapi.mail.composer import MailComposer
from userapi.mail.constants import MailTemplate
from userapi.mail.repository import OutboxRepository
from userapi.mail.service import MailService

BATCH = 30


@pytest.fixture
async def clean_outbox(mail_engine: AsyncEngine) -> AsyncIterator[None]:
    engine = mail_engine
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM mail_outbox"))
    yield
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM mail_outbox"))


async def commit_mail(engine: AsyncEngine, database_url: str, addresses: list[str]) -> None:
    settings = make_settings(database_url, mail_delivery="auto")
    async with build_sessionmaker(engine)() as session:
        mail = MailService(OutboxRepository(session), MailComposer.from_settings(settings))
        for address in addresses:
            await mail.enqueue(
                MailTemplate.password_reset, address, link="https://x.example/r", expires_in="30 minutes"
            )
        await session.commit()


@pytest.mark.usefixtures("clean_outbox")
async def test_two_serve_processes_wake_on_commit_and_drain_one_outbox_without_duplicates(
    mail_database_url: str, mail_engine: AsyncEngine, smtp: SmtpServer
) -> None:
    database_url, engine = mail_database_url, mail_engine
    # Polling only every 60 s: within this test only LISTEN/NOTIFY can wake the workers.
    env = server_env(database_url, MAIL_DELIVERY="auto", SMTP_URL=smtp.url, MAIL_POLL_SECONDS="60")
    # Committed while no worker runs (as after a crash right after a commit): not lost.
    await commit_mail(engine, database_url, ["waiting@example.com"])
    with running_server(env) as base, running_server(env):
        await asyncio.to_thread(smtp.wait_for, 1, 30)
        await asyncio.sleep(1)  # both workers have run their first drain and are listening
        started = time.monotonic()
        await commit_mail(engine, database_url, ["notify@example.com"])
        await asyncio.to_thread(smtp.wait_for, 2, 10)
        assert time.monotonic() - started < 5

        addresses = [f"proc-{n}@example.com" for n in range(BATCH)]
        await commit_mail(engine, database_url, addresses)
        await asyncio.to_thread(smtp.wait_for, BATCH + 2, 30)
        await asyncio.sleep(1.5)  # time for a duplicate to show up, if one were coming
        await asyncio.to_thread(_reset_over_http, base, smtp)
    per_address = Counter(r.rcpt_tos[0] for r in smtp.received)
    assert per_address.pop(RESET_ADDRESS) == 2  # verification and reset
    assert sorted(per_address) == sorted([*addresses, "notify@example.com", "waiting@example.com"])
    assert set(per_address.values()) == {1}, [a for a, n in per_address.items() if n > 1]
    async with engine.connect() as conn:
        statuses = (
            await conn.execute(text("SELECT status, count(*) FROM mail_outbox GROUP BY status"))
        ).all()
    assert dict(statuses) == {"sent": BATCH + 4}


RESET_ADDRESS = "served@example.com"


def _reset_over_http(base: str, smtp: SmtpServer) -> None:
    """The reset flow against the running server: sign up, forgot, the mail, the link, a new password."""
    with httpx.Client(base_url=base, timeout=30) as http:
        before = len(smtp.received)
        assert (
            http.post(f"{API}/auth/register", json={"email": RESET_ADDRESS, "password": PASSWORD}).status_code
            == 201
        )
        assert http.post(f"{API}/auth/password/forgot", json={"email": RESET_ADDRESS}).status_code == 202
        arrived = smtp.wait_for(before + 2, 30)[before:]
        reset = next(r for r in arrived if "reset-password" in r.text)
        token = re.findall(r"/account/reset-password\?token=([A-Za-z0-9_-]+)", reset.text)[0]
        new = "quiet harbor lantern 7"
        assert (
            http.post(f"{API}/auth/password/reset", json={"token": token, "new_password": new}).status_code
            == 204
        )
        assert (
            http.post(f"{API}/auth/login", json={"email": RESET_ADDRESS, "password": new}).status_code == 200
        )


@pytest.mark.usefixtures("clean_outbox")
async def test_mail_status_shows_the_outbox(mail_database_url: str, mail_engine: AsyncEngine) -> None:
    database_url, engine = mail_database_url, mail_engine
    await commit_mail(engine, database_url, ["status-1@example.com", "status-2@example.com"])
    result = await asyncio.to_thread(run_cli, "mail", "status", env=server_env(database_url))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("pending 2  sent 0  failed 0  oldest pending ")
    assert "password_reset -> status-2@example.com" in lines[2]
    assert "https://x.example" not in result.stdout  # never the content


def test_production_start_up_without_smtp_url_stops_with_one_line(database_url: str) -> None:
    # The other refusals (a malformed SMTP_URL or MAIL_FROM, REQUIRE_VERIFIED_EMAIL with mail off)
    # take the same path; tests/mail/test_settings.py checks each of them without a process.
    env = server_env(database_url, ENVIRONMENT="production", JWT_SECRET=TEST_SECRET, MAIL_DELIVERY="auto")
    env.pop("SMTP_URL", None)
    result = run_cli("serve", env=env)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "SMTP_URL must be set in production" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_production_with_mail_deliberately_off_passes_the_mail_check(database_url: str) -> None:
    env = server_env(database_url, ENVIRONMENT="production", MAIL_DELIVERY="off")
    env.pop("SMTP_URL", None)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        # Start-up gets past the mail and database checks and stops only at the busy port.
        result = run_cli("serve", "--port", str(busy.getsockname()[1]), env=env)
    assert result.returncode == 1
    assert "cannot listen on" in result.stderr, result.stderr


@pytest.mark.usefixtures("clean_outbox")
async def test_prune_commands_delete_only_what_is_dead(
    mail_database_url: str, mail_engine: AsyncEngine
) -> None:
    database_url, engine = mail_database_url, mail_engine
    await commit_mail(engine, database_url, ["old-sent@example.com", "old-pending@example.com"])
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE mail_outbox SET created_at = now() - interval '40 days'"))
        await conn.execute(
            text(
                "UPDATE mail_outbox SET status = 'sent', content = NULL"
                " WHERE recipient = 'old-sent@example.com'"
            )
        )
        user_id = (
            await conn.execute(
                text("INSERT INTO users (email, password_hash) VALUES (:e, 'x') RETURNING id"),
                {"e": "prune-tokens@example.com"},
            )
        ).scalar_one()
        for n, expires in enumerate(["now() - interval '1 minute'", "now() + interval '1 hour'"]):
            await conn.execute(
                text(
                    "INSERT INTO account_tokens (user_id, purpose, token_hash, email, expires_at)"
                    f" VALUES (:u, 'password_reset', :h, 'prune-tokens@example.com', {expires})"
                ),
                {"u": user_id, "h": bytes([n]) * 32},
            )
    env = server_env(database_url)
    try:
        pruned = await asyncio.to_thread(run_cli, "mail", "prune", "--days", "30", env=env)
        assert pruned.returncode == 0, pruned.stderr
        assert "deleted 1 messages" in pruned.stdout
        sessions = await asyncio.to_thread(run_cli, "prune-sessions", env=env)
        assert sessions.returncode == 0, sessions.stderr
        assert "and 1 expired mailed tokens" in sessions.stdout
        async with engine.connect() as conn:
            left = (await conn.execute(text("SELECT recipient FROM mail_outbox"))).scalars().all()
            tokens = (
                await conn.execute(
                    text("SELECT count(*) FROM account_tokens WHERE user_id = :u"), {"u": user_id}
                )
            ).scalar()
        assert left == ["old-pending@example.com"]  # never delivered: kept, however old
        assert tokens == 1
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM users WHERE id = :u"), {"u": user_id})
