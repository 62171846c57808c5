"""Domain errors of the mfa domain."""

from __future__ import annotations

from userapi.core.exceptions import Conflict, PermissionDenied, Unauthenticated


class InvalidCode(Unauthenticated):
    code = "invalid_code"
    title = "Invalid code"
    keeps_writes = True  # the attempt count, the audit row


class InvalidMfaToken(Unauthenticated):
    code = "invalid_mfa_token"
    title = "Invalid mfa_token"
    keeps_writes = True  # a token killed by its last attempt stays dead


class WrongCurrentPassword(PermissionDenied):
    code = "wrong_current_password"
    title = "Wrong current password"
    keeps_writes = True  # the audit row of the failed check


class WrongCode(PermissionDenied):
    """A wrong code where a signed-in user confirms a change (not a sign-in: 403, not 401)."""

    code = "wrong_code"
    title = "Wrong code"
    keeps_writes = True


class MfaAlreadyEnabled(Conflict):
    code = "mfa_already_enabled"
    title = "Second factor already enabled"


class MfaNotEnrolled(Conflict):
    code = "mfa_not_enrolled"
    title = "No second factor to act on"
