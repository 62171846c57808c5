"""Domain errors of the auth domain."""

from __future__ import annotations

from userapi.core.exceptions import NotFound, PermissionDenied, Unauthenticated


class InvalidCredentials(Unauthenticated):
    code = "invalid_credentials"
    title = "Invalid credentials"
    keeps_writes = True  # the failed-login audit row


class InvalidRefreshToken(Unauthenticated):
    code = "invalid_refresh_token"
    title = "Invalid refresh token"
    bearer_error = "invalid_token"
    keeps_writes = True  # a family revoked on reuse must stay revoked


class WrongCurrentPassword(PermissionDenied):
    code = "wrong_current_password"
    title = "Wrong current password"
    keeps_writes = True  # the failed check's audit row


class SessionNotFound(NotFound):
    code = "session_not_found"
    title = "Session not found"
