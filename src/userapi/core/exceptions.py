"""Domain error bases: semantic exceptions services raise; no web imports here."""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    """Base of every expected error; rendered as an RFC 9457 problem document."""

    status_code = 400
    code = "bad_request"
    title = "Bad request"
    # True when the writes made before the error are part of its outcome (an audit row, a
    # revoked session) and must be committed although the request fails.
    keeps_writes = False

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        self.detail = detail or self.title
        self.extra = extra
        super().__init__(self.detail)


class NotFound(AppError):
    status_code = 404
    code = "not_found"
    title = "Not found"


class Conflict(AppError):
    status_code = 409
    code = "conflict"
    title = "Conflict"


class Unauthenticated(AppError):
    status_code = 401
    code = "unauthenticated"
    title = "Unauthenticated"
    # RFC 6750 error code carried in WWW-Authenticate; None means a bare "Bearer" challenge.
    bearer_error: str | None = None


class InvalidToken(Unauthenticated):
    code = "invalid_token"
    title = "Invalid token"
    bearer_error = "invalid_token"


class PermissionDenied(AppError):
    status_code = 403
    code = "forbidden"
    title = "Forbidden"


class InvalidInput(AppError):
    status_code = 422
    code = "invalid_input"
    title = "Invalid input"


class Throttled(AppError):
    keeps_writes = True
    status_code = 429
    code = "too_many_requests"
    title = "Too many requests"

    def __init__(self, retry_after: int, detail: str | None = None) -> None:
        self.retry_after = max(1, retry_after)
        super().__init__(detail or f"Too many attempts; retry in {self.retry_after} seconds")
