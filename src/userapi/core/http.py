"""HTTP conventions the framework leaves to us: HEAD wherever GET, bodiless 204s, no-store token responses.

- `HttpConventions` (ASGI middleware, for every route there is and will be): a HEAD request is
  answered as the GET of the same URL without its body (RFC 9110 9.3.2: monitors probe with
  HEAD, and FastAPI routes answer it 405); a 204 carries no body, no Content-Type and no
  Content-Length (RFC 9110 8.6, 15.3.5).
- `NoStore` (route dependency): `Cache-Control: no-store` and `Pragma: no-cache` on a response
  that carries tokens (RFC 6749 5.1). Every route answering a token pair declares it: login,
  the token endpoint, refresh, and the MFA verification to come.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_BODILESS_STATUSES = frozenset({204})
_DROPPED_ON_BODILESS = frozenset({b"content-type", b"content-length"})


class HttpConventions:
    """HEAD as a bodiless GET, and 204s without body or content headers, for every route."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        head = scope["method"] == "HEAD"
        bodiless = head

        async def conforming_send(message: Message) -> None:
            nonlocal bodiless
            if message["type"] == "http.response.start" and message["status"] in _BODILESS_STATUSES:
                bodiless = True
                headers = message.get("headers", ())
                message["headers"] = [(k, v) for k, v in headers if k not in _DROPPED_ON_BODILESS]
            elif message["type"] == "http.response.body" and bodiless:
                if message.get("more_body", False):
                    return  # a streamed body: nothing of it is sent, only its end
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        if not head:
            await self.app(scope, receive, conforming_send)
            return
        # Routed as the GET it stands for; the headers (Content-Length included) stay the GET's.
        # On a copy: the server reads scope["method"] while the response is sent, and must see
        # HEAD there, or it expects the GET's body and fails the response (uvicorn does). What
        # routing adds to the scope (the matched route) is copied back for the access log and
        # metrics outside, which report the HEAD as a HEAD.
        routed = {**scope, "method": "GET"}
        try:
            await self.app(routed, receive, conforming_send)
        finally:
            scope.update((key, value) for key, value in routed.items() if key != "method")


async def no_store(response: Response) -> None:
    """Route dependency: the response must not be stored by any cache (RFC 6749 5.1, RFC 9111 5.2.2.5).

    `Pragma: no-cache` is for HTTP/1.0 caches, as RFC 6749's examples send it.
    """
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"


# `dependencies=[NoStore]` on every route whose response carries an access or refresh token.
NoStore: Any = Depends(no_store)
