"""The secret guard itself: it counts before it verifies, records each failure and throttling, and makes
the refusal keep the audit row (the HTTP behaviour is in test_secret_checks.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from userapi.audit.service import AuditService
from userapi.core.client import ClientInfo
from userapi.core.config import Settings
from userapi.core.exceptions import PermissionDenied, Throttled
from userapi.core.throttle import Throttle
from userapi.guard.constants import SecretKind
from userapi.guard.service import SecretGuard, Verdict

# --- the mechanism itself ---------------------------------------------------------------------------------


class WrongSecret(PermissionDenied):
    code = "wrong_secret"


async def test_the_guard_counts_before_it_verifies_and_records_each_failure(
    settings: Settings, db_conn: AsyncConnection
) -> None:
    session = AsyncSession(bind=db_conn, join_transaction_mode="create_savepoint")
    throttle = Throttle(settings.model_copy(update={"rate_limit_secret_account": "2/minute"}))
    guard = SecretGuard(throttle, AuditService.for_session(session))
    client = ClientInfo(ip="192.0.2.44", user_agent="guard-test")
    calls: list[str] = []

    def verifier(verdict: bool | Verdict) -> Callable[[], Any]:
        async def verify() -> bool | Verdict:
            calls.append("verify")
            return verdict

        return verify

    account = "guard-test-account"
    refuse = WrongSecret("no")
    assert not refuse.keeps_writes
    passed = await guard.check(
        SecretKind.one_time_code, verifier(True), account=account, client=client, refuse=refuse
    )
    assert passed.ok
    with pytest.raises(WrongSecret) as failed:
        await guard.check(
            SecretKind.one_time_code,
            verifier(Verdict.failed("replayed")),
            account=account,
            client=client,
            refuse=refuse,
            factor="totp",
        )
    # The refusal keeps the request's writes, so the failure's audit row commits with the error.
    assert failed.value.keeps_writes
    with pytest.raises(Throttled):
        await guard.check(
            SecretKind.one_time_code, verifier(True), account=account, client=client, refuse=refuse
        )
    assert calls == ["verify", "verify"]  # the throttled attempt compared nothing
    # Another kind has its own count for the same account.
    await guard.check(SecretKind.recovery_code, verifier(True), account=account, client=client, refuse=refuse)
    await session.flush()
    rows = (
        await db_conn.execute(
            text("SELECT type, detail FROM auth_events WHERE ip = :ip ORDER BY id"), {"ip": client.ip}
        )
    ).all()
    assert [(r.type, r.detail) for r in rows] == [
        ("secret_check_failed", {"kind": "one_time_code", "reason": "replayed", "factor": "totp"}),
        ("secret_check_throttled", {"kind": "one_time_code"}),
    ]
