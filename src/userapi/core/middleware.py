"""Pure-ASGI middleware: body size limit (413 before parsing), request id, metrics and access log."""

from __future__ import annotations

import time
import uuid
from typing import Any

import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from userapi.core.exception_handlers import ErrorPage, http_error_title, problem
from userapi.core.metrics import HTTP_LATENCY, HTTP_REQUESTS, THROTTLED


class _BodyTooLarge(HTTPException):
    # An HTTPException so FastAPI's body parsing re-raises it as is (it turns others into 400).
    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"The request body exceeds {max_bytes} bytes")


class BodySizeLimit:
    """Refuses bodies over `max_bytes` with 413, by Content-Length up front or while streaming; a
    problem document, or at a page's address the page `error_page` renders.

    Starlette 1.x has a `max_body_size` of its own, but it answers `text/plain` (every error
    here is a problem document) and checks Content-Length only once the body is read.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, error_page: ErrorPage | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.error_page = error_page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.max_bytes:
                    await self._reject(scope, receive, send)
                    return
                break
        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if response_started:
                raise
            await self._reject(scope, receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        code, title = http_error_title(413)
        detail = f"The request body exceeds {self.max_bytes} bytes"
        page = self.error_page(Request(scope), 413, title, detail) if self.error_page is not None else None
        response = page if page is not None else problem(413, code, title, detail)
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


_REQUEST_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            # Echoed into headers and logs: only a short, plain value is taken as given.
            text: str = value.decode("latin-1")
            if 0 < len(text) <= 128 and _REQUEST_ID_CHARS.issuperset(text):
                return text
            break
    return uuid.uuid4().hex


def _route_template(scope: Scope, root_path: str) -> str:
    """The matched route's path template (the metrics' `route` label, never the raw path): a route's
    own, `/mount/{path}` for a file under a mount (the docs' and the pages' assets: the router
    appended the mount's path to `root_path`), else `unmatched`."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    if template:
        return str(template)
    mounted = str(scope.get("root_path", ""))
    if mounted != root_path and mounted.startswith(root_path):
        return mounted[len(root_path) :] + "/{path}"
    return "unmatched"


# Label sets whose metric children RequestContext keeps at hand. Routes, statuses and the usual
# methods make a few hundred at most; past this (a client inventing methods) it asks each time.
MAX_CACHED_LABEL_SETS = 1024


class RequestContext:
    """Request id (taken from X-Request-ID or made, echoed back), metrics and one access line per request."""

    def __init__(self, app: ASGIApp, access_log: bool) -> None:
        self.app = app
        self.access_log = access_log
        self.log = structlog.get_logger("userapi.access")
        # The metric children per label set: `labels()` takes a lock and validates the labels on
        # every call (1.6 % of a worker's time on GET /users/me, issue 17); these are the same
        # children it returns, so the samples are the same.
        self._requests: dict[tuple[str, str, int], Any] = {}
        self._latency: dict[tuple[str, str], Any] = {}

    def _observe(self, method: str, template: str, status: int, seconds: float) -> None:
        """Count the request and record its duration under its method, route template and status."""
        counter = self._requests.get((method, template, status))
        if counter is None:
            counter = HTTP_REQUESTS.labels(method, template, str(status))
            if len(self._requests) < MAX_CACHED_LABEL_SETS:
                self._requests[(method, template, status)] = counter
        counter.inc()
        histogram = self._latency.get((method, template))
        if histogram is None:
            histogram = HTTP_LATENCY.labels(method, template)
            if len(self._latency) < MAX_CACHED_LABEL_SETS:
                self._latency[(method, template)] = histogram
        histogram.observe(seconds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        header = (b"x-request-id", request_id.encode("latin-1"))
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=request_id)
        root_path = scope.get("root_path", "")
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            duration = time.perf_counter() - started
            template = _route_template(scope, root_path)
            method = scope["method"]
            self._observe(method, template, status, duration)
            if status == 429:
                THROTTLED.labels(template).inc()
            if self.access_log:
                client = scope.get("client")
                self.log.info(
                    "request",
                    method=method,
                    path=scope["path"],  # never the query string: it may carry secrets
                    route=template,
                    status=status,
                    duration_ms=round(duration * 1000, 2),
                    client=client[0] if client else None,
                )
            structlog.contextvars.unbind_contextvars("request_id")
