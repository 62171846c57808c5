"""Renders every error (domain, validation, HTTP, database outage, unexpected) as RFC 9457 problem+json,
except HTTP errors at the addresses of pages, which the pages' own renderer answers (`ErrorPage`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from userapi.core.exceptions import AppError, Throttled, Unauthenticated

logger = logging.getLogger("userapi.errors")

PROBLEM_MEDIA_TYPE = "application/problem+json"

# The page for an HTTP error (status, title, detail) at a page's address, or None where the address
# is the API's. Supplied by the app's composition: core imports no domain, nor the web pages.
ErrorPage = Callable[[Request, int, str, str], Response | None]
_TYPE_BASE = "https://userapi.dev/problems/"

_HTTP_TITLES = {
    400: ("bad_request", "Bad request"),
    401: ("unauthenticated", "Unauthenticated"),
    403: ("forbidden", "Forbidden"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    406: ("not_acceptable", "Not acceptable"),
    413: ("payload_too_large", "Payload too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
    422: ("invalid_input", "Invalid input"),
    429: ("too_many_requests", "Too many requests"),
    503: ("service_unavailable", "Service unavailable"),
}


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    body: dict[str, Any] = {
        "type": _TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    body.update(extra)
    return ProblemResponse(body, status_code=status, headers=headers)


async def _app_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    headers: dict[str, str] = {}
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = f'Bearer error="{exc.bearer_error}"' if exc.bearer_error else "Bearer"
    if isinstance(exc, Throttled):
        headers["Retry-After"] = str(exc.retry_after)
    return problem(exc.status_code, exc.code, exc.title, exc.detail, headers or None, **exc.extra)


def _clean_error(error: Any) -> dict[str, Any]:
    # Only location, message and type: `input` could echo a password back, `ctx` may not serialise.
    loc = [part if isinstance(part, int | str) else str(part) for part in error.get("loc", ())]
    msg = str(error.get("msg", ""))
    if error.get("type") in ("too_long", "too_short") and isinstance(error.get("input"), str):
        # A length bound placed beside a validator is checked generically ("items"); for text
        # the unit is characters.
        msg = msg.replace(" items after validation", " characters").replace(" items", " characters")
    return {"loc": loc, "msg": msg, "type": str(error.get("type", ""))}


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [_clean_error(e) for e in exc.errors()]
    return problem(422, "invalid_input", "Invalid input", "The request is not valid", errors=errors)


def http_error_title(status: int) -> tuple[str, str]:
    """The problem `code` and `title` of an HTTP status (`http_error` for one not listed)."""
    return _HTTP_TITLES.get(status, ("http_error", "HTTP error"))


def _http_error_handler(error_page: ErrorPage | None) -> Callable[[Request, Exception], Any]:
    async def _http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code, title = http_error_title(exc.status_code)
        detail = exc.detail if isinstance(exc.detail, str) else title
        page = error_page(request, exc.status_code, title, detail) if error_page is not None else None
        if page is not None:
            page.headers.update(exc.headers or {})  # Allow, on a 405
            return page
        return problem(exc.status_code, code, title, detail, dict(exc.headers or {}) or None)

    return _http_error


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    logger.warning("database unavailable: %s", type(exc).__name__)
    return problem(
        503,
        "database_unavailable",
        "Service unavailable",
        "The database is unavailable; retry shortly",
        {"Retry-After": "1"},
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    if _is_database_outage(exc):
        return await _database_unavailable(request, exc)
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(500, "internal_error", "Internal server error", "An unexpected error occurred")


# SQLSTATEs of a server that is going away or not there yet: connection exceptions (class 08),
# admin/crash shutdown and "the database system is starting up / shutting down" (57P01-57P03), and
# too many connections. SQLAlchemy wraps some of these in a plain DBAPIError, not OperationalError.
_OUTAGE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300")


def _is_database_outage(exc: BaseException) -> bool:
    """Lost or refused connections (and pool timeouts) mean 'try again', not 'bug'."""
    if isinstance(exc, sa_exc.TimeoutError | ConnectionError | TimeoutError):
        return True
    orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
    if str(getattr(orig, "sqlstate", None) or "").startswith(_OUTAGE_SQLSTATES):
        return True
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, sa_exc.InterfaceError | sa_exc.OperationalError):
        return True
    cause = exc.__cause__ or exc.__context__
    return cause is not None and cause is not exc and isinstance(cause, OSError | ConnectionError)


def install_exception_handlers(app: FastAPI, error_page: ErrorPage | None = None) -> None:
    """Answer every error as a problem document; an HTTP error (an unknown address, a method not
    allowed) at a page's address as `error_page` renders it."""
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error_handler(error_page))
    app.add_exception_handler(sa_exc.TimeoutError, _database_unavailable)
    # Database errors are answered here, not only by the catch-all: Starlette runs the `Exception`
    # handler in ServerErrorMiddleware, which re-raises after responding, so uvicorn logs a traceback
    # per request and closes the keep-alive connection; in an outage clients then saw resets, not 503s.
    app.add_exception_handler(sa_exc.DBAPIError, _unexpected)
    app.add_exception_handler(OSError, _unexpected)  # ConnectionError, refused connects, timeouts
    app.add_exception_handler(Exception, _unexpected)
