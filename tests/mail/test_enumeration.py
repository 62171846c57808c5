"""Forgot-password tells nobody whether an account exists: the same answer, the same statements,
about the same time for a known and an unknown address."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from typing import Any

import httpx
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from tests.fixtures.app import make_account
from tests.fixtures.helpers import API, unique_email
from tests.fixtures.mail import Mailbox
from userapi.audit.service import AuditService
from userapi.auth.account_tokens import AccountTokens
from userapi.auth.constants import TokenPurpose
from userapi.auth.repository import AccountTokenRepository
from userapi.core.client import ClientInfo
from userapi.core.config import Settings
from userapi.core.throttle import Throttle
from userapi.guard.service import SecretGuard
from userapi.mail.composer import MailComposer
from userapi.mail.constants import MailTemplate
from userapi.mail.service import MailService

ROUNDS = 60


@contextmanager
def statements(conn: AsyncConnection) -> Iterator[list[str]]:
    """Each SQL statement run on the test's connection, as `VERB table` (parameters left out)."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        words = statement.split()
        verb = words[0].upper()
        if verb in ("SAVEPOINT", "RELEASE", "ROLLBACK"):  # their names are counters
            seen.append(verb)
            return
        table = next((w for w in words[1:] if w.isidentifier() and w.upper() not in _KEYWORDS), "")
        seen.append(f"{verb} {table}".strip())

    event.listen(conn.sync_connection, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(conn.sync_connection, "before_cursor_execute", record)


_KEYWORDS = {"INTO", "FROM", "TO", "SAVEPOINT", "ONLY", "DISTINCT"}


async def forgot(client: httpx.AsyncClient, email: str) -> httpx.Response:
    response = await client.post(f"{API}/auth/password/forgot", json={"email": email})
    assert response.status_code == 202, response.text
    return response


async def test_known_and_unknown_addresses_run_the_same_statements(
    mail_client: tuple[httpx.AsyncClient, Mailbox], db_conn: AsyncConnection
) -> None:
    client, _ = mail_client
    known = (await make_account(client))["email"]
    with statements(db_conn) as for_known:
        await forgot(client, known)
    with statements(db_conn) as for_unknown:
        await forgot(client, unique_email("nobody"))
    assert for_known == for_unknown
    # And that shape includes the work: the token and the message are written (or not) by an INSERT.
    assert {"INSERT account_tokens", "INSERT mail_outbox", "INSERT auth_events"} <= set(for_known)


async def _timed(step: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await step()
    return (time.perf_counter() - started) * 1000


async def test_known_and_unknown_addresses_take_about_the_same_time(
    mail_client: tuple[httpx.AsyncClient, Mailbox],
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    async with AsyncExitStack() as stack:
        await _compare_timings(stack, mail_client, sessions, settings)


async def _compare_timings(
    stack: AsyncExitStack,
    mail_client: tuple[httpx.AsyncClient, Mailbox],
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    """The median difference of known and unknown, timed side by side in interleaved rounds. The
    tolerance is half the cost of the work an enumerable implementation would skip for an unknown
    address (making the token, the message, and writing both), timed in the same rounds: an
    implementation that skipped it would differ by about that much, and fail."""
    client, _ = mail_client
    known = [(await make_account(client))["email"] for _ in range(4)]
    composer = MailComposer.from_settings(settings)
    client_info = ClientInfo(ip="127.0.0.1", user_agent=None)

    async def skippable_work() -> None:
        async with sessions() as session:
            tokens = AccountTokens(
                AccountTokenRepository(session),
                SecretGuard(Throttle(settings), AuditService.for_session(session)),
                AuditService.for_session(session),
            )
            raw = await tokens.issue_nothing(TokenPurpose.password_reset, "x@example.com", 1800, client_info)
            await MailService.for_session(session, composer).enqueue_nothing(
                MailTemplate.password_reset, "x@example.com", link=f"https://x/{raw}", expires_in="30 minutes"
            )

    times: dict[str, list[float]] = {"known": [], "unknown": [], "skippable": []}
    for n in range(-5, ROUNDS):  # the first five warm up (statements get prepared)
        steps: dict[str, Callable[[], Awaitable[object]]] = {
            "known": lambda n=n: forgot(client, known[n % 4]),  # type: ignore[misc]
            "unknown": lambda: forgot(client, unique_email("nobody")),
            "skippable": skippable_work,
        }
        for name in list(steps) if n % 2 else list(reversed(steps)):
            elapsed = await _timed(steps[name])
            if n >= 0:
                times[name].append(elapsed)
    # Paired by round: a known and an unknown request timed side by side see the same load, so the
    # median of their differences is steady while the machine's load drifts (separate medians of the
    # two series are not: one busy stretch can move one series and not the other).
    difference_ms = statistics.median(k - u for k, u in zip(times["known"], times["unknown"], strict=True))
    known_ms, unknown_ms, skippable_ms = (statistics.median(times[name]) for name in times)
    print(
        f"forgot: known {known_ms:.2f} ms, unknown {unknown_ms:.2f} ms, paired difference "
        f"{difference_ms:.2f} ms, skippable work {skippable_ms:.2f} ms"
    )
    assert skippable_ms > 0.2  # the calibration measured something
    assert abs(difference_ms) < skippable_ms / 2, (difference_ms, known_ms, unknown_ms, skippable_ms)
