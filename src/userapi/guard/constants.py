"""Values of the guard domain: the kinds of secret checked, and the limits and audit events of each."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from userapi.audit.constants import EventType
from userapi.core.throttle import Limit


class SecretKind(enum.StrEnum):
    """What a check compares; the `kind` label of metrics and audit details (OWASP ASVS V2.2.1)."""

    password = "password"  # the sign-in password: login and the OAuth2 token endpoint
    current_password = "current_password"  # re-authentication of a signed-in user (password change, ...)
    one_time_code = "one_time_code"  # TOTP codes (RFC 6238)
    recovery_code = "recovery_code"  # MFA recovery codes
    mailed_token = "mailed_token"  # tokens sent by mail (verification, password reset, email change)
    metrics_token = "metrics_token"  # the operator's METRICS_TOKEN on GET /metrics


@dataclass(frozen=True, slots=True)
class Policy:
    """The limits a kind of check counts against, and the audit events it records."""

    account_limit: Limit
    # Key the account counter by account *and* client IP. For the sign-in password: an attacker's
    # failures from their address must not lock the owner out from theirs. Not for checks behind
    # a first factor or a token (current password, codes): there the caller already holds the
    # account, and a guess budget per IP would let a botnet multiply it.
    account_per_ip: bool
    ip_limit: Limit
    failed: EventType
    throttled: EventType


_SIGN_IN = Policy(
    Limit.login_account, True, Limit.login_ip, EventType.login_failed, EventType.login_throttled
)
_OTHER = Policy(
    Limit.secret_account,
    False,
    Limit.secret_ip,
    EventType.secret_check_failed,
    EventType.secret_check_throttled,
)
POLICIES: dict[SecretKind, Policy] = dict.fromkeys(SecretKind, _OTHER) | {SecretKind.password: _SIGN_IN}
