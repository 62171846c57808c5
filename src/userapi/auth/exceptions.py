"""Domain errors of the auth domain."""

from __future__ import annotations

from userapi.core.exceptions import (
    AppError,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)


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


class OAuthError(AppError):
    """An error of the OAuth 2.0 token endpoint (RFC 6749 5.2): 400, and in the problem document the
    RFC's members `error` (= `code`) and `error_description` (= `detail`) beside RFC 9457's."""

    status_code = 400

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail)
        self.extra = {"error": self.code, "error_description": self.detail}


class InvalidRequest(OAuthError):
    """A parameter is missing, repeated, malformed or not allowed (RFC 6749 5.2 `invalid_request`)."""

    code = "invalid_request"
    title = "Invalid token request"


class UnsupportedGrantType(OAuthError):
    code = "unsupported_grant_type"
    title = "Unsupported grant type"


class InvalidGrant(OAuthError):
    """Wrong, unknown or inactive credentials: one answer for all (RFC 6749 5.2 `invalid_grant`)."""

    code = "invalid_grant"
    title = "Invalid grant"
    keeps_writes = True  # the failed-login audit row


class InvalidAccountToken(AppError):
    """A mailed token that is unknown, spent, retired, expired or for another purpose (one answer)."""

    status_code = 400
    code = "invalid_token"
    title = "Invalid or expired link"
    keeps_writes = True  # the rejection's audit row


class EmailNotVerified(PermissionDenied):
    code = "email_not_verified"
    title = "Email address not verified"
    keeps_writes = True  # the failed-login audit row


class EmailAlreadyVerified(Conflict):
    code = "email_already_verified"
    title = "Email address already verified"


class EmailUnchanged(InvalidInput):
    code = "email_unchanged"
    title = "That is already your address"
