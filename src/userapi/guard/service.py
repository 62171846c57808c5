"""SecretGuard: the one way to check a presented secret (counted first, failures audited, all counted).

Every place that compares a secret goes through `SecretGuard.check`: the sign-in password (login,
/auth/token), the current password of a signed-in user (password change; email change and MFA
enrolment or removal as they arrive), one-time codes, recovery codes, mailed tokens and the
metrics token. Login's guards thereby hold everywhere (OWASP ASVS V2.2.1, NIST SP 800-63B 5.2.2):

1. The attempt is counted *before* the secret is compared, in one atomic check-and-count per
   account (when the account is known) and per client IP, on the `limits` storage the process
   shares (memory, or Redis for several processes). Past a limit the check never runs: the
   throttling is recorded in the audit trail and `Throttled` is raised (429 + Retry-After).
2. `verify()` compares the secret (bcrypt, TOTP, a token hash: the caller's business).
3. A failure is recorded in the audit trail and the caller's `refuse` error is raised; it keeps
   the request's writes, so the audit row commits although the request fails.
4. Each outcome is counted in `userapi_secret_checks_total{kind, outcome}` (success, failure,
   throttled); sign-in also keeps counting in `userapi_logins_total{outcome}` (via its audit events).

Interface (a domain's service takes a `SecretGuard`; its dependencies.py passes `SecretGuardDep`):

    from userapi.guard.constants import SecretKind
    from userapi.guard.service import SecretGuard, Verdict

    verdict = await guard.check(
        SecretKind.one_time_code,       # what is compared: picks the limits and audit event types
        verify,                         # async () -> bool | Verdict: True / Verdict.passed() if right
        account=str(user.id),           # throttle key of the account; None when it is unknown
        client=client,                  # ClientInfo: its IP is the per-IP key, both go to the audit row
        refuse=InvalidCode("The code is not valid"),  # the domain error raised when verify says no
        user_id=user.id,                # whom the audit events are about (None: nobody known)
        factor="totp",                  # any extra audit detail: short strings, never a secret
    )
    # Here the secret was right (`verdict.ok` is True); anything else has raised.

Limits (settings, `limits` notation): the sign-in password counts against RATE_LIMIT_LOGIN_ACCOUNT
(keyed by account and IP) and RATE_LIMIT_LOGIN_IP; every other kind against
RATE_LIMIT_SECRET_ACCOUNT (keyed by kind and account) and RATE_LIMIT_SECRET_IP (per IP, all kinds).
Audit events: `login_failed` / `login_throttled` for the sign-in password, `secret_check_failed` /
`secret_check_throttled` for the others; each carries `kind` (and `reason` on failure) in its detail.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from userapi.audit.service import AuditService
from userapi.core.client import ClientInfo
from userapi.core.exceptions import AppError, Throttled
from userapi.core.metrics import SECRET_CHECKS
from userapi.core.security import PasswordHasher
from userapi.core.throttle import Throttle
from userapi.guard.constants import POLICIES, SecretKind


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one comparison: `ok`, and on failure a short `reason` for the audit trail.

    `user_id` names whom a failure is about when only the comparison found out (login looks the
    account up after the attempt is counted); it overrides `check`'s `user_id` in the audit row.
    """

    ok: bool
    reason: str = "wrong_secret"
    user_id: uuid.UUID | None = None

    @classmethod
    def passed(cls, user_id: uuid.UUID | None = None) -> Verdict:
        return cls(True, "", user_id)

    @classmethod
    def failed(cls, reason: str, user_id: uuid.UUID | None = None) -> Verdict:
        return cls(False, reason, user_id)


class SecretGuard:
    """Throttles, audits and counts every check of a secret; built per request (see the module doc)."""

    def __init__(self, throttle: Throttle, audit: AuditService) -> None:
        self.throttle = throttle
        self.audit = audit

    async def check_current_password(
        self,
        hasher: PasswordHasher,
        password_hash: str,
        presented: str,
        *,
        user_id: uuid.UUID,
        client: ClientInfo,
        refuse: AppError,
    ) -> None:
        """The account's current password again, before a security change (a new password, a new
        address, the second factor): a `current_password` check, counted per account and per IP,
        a failure audited with reason `wrong_password`. Raises Throttled, `refuse`."""

        async def verify() -> Verdict:
            checked = await hasher.verify(presented, password_hash)
            return Verdict(checked.valid, "wrong_password")

        await self.check(
            SecretKind.current_password,
            verify,
            account=str(user_id),
            client=client,
            refuse=refuse,
            user_id=user_id,
        )

    async def check(
        self,
        kind: SecretKind,
        verify: Callable[[], Awaitable[bool | Verdict]],
        *,
        account: str | None,
        client: ClientInfo,
        refuse: AppError,
        user_id: uuid.UUID | None = None,
        **detail: str,
    ) -> Verdict:
        """Count the attempt, run `verify`, record the outcome; returns the verdict only when it passed.

        Raises Throttled (before `verify` runs, nothing compared) past a limit, and `refuse`
        when `verify` returns False or a failed Verdict. `detail` goes to the audit row: short
        labels such as the canonical email of a sign-in, never the secret itself.
        """
        policy = POLICIES[kind]
        try:
            if account is not None:
                key = (kind.value, account, client.ip) if policy.account_per_ip else (kind.value, account)
                await self.throttle.hit(policy.account_limit, *key)
            await self.throttle.hit(policy.ip_limit, client.ip)
        except Throttled:
            SECRET_CHECKS.labels(kind.value, "throttled").inc()
            await self.audit.record(
                policy.throttled, user_id=user_id, client=client, actor_id=None, kind=kind.value, **detail
            )
            raise
        outcome = await verify()
        verdict = outcome if isinstance(outcome, Verdict) else Verdict(ok=outcome)
        if verdict.ok:
            SECRET_CHECKS.labels(kind.value, "success").inc()
            return verdict
        SECRET_CHECKS.labels(kind.value, "failure").inc()
        await self.audit.record(
            policy.failed,
            user_id=verdict.user_id or user_id,
            client=client,
            actor_id=None,
            kind=kind.value,
            reason=verdict.reason,
            **detail,
        )
        # The failure's audit row is part of the outcome: it must commit with the error response.
        refuse.keeps_writes = True
        raise refuse
