"""Response headers that protect the HTML pages this service serves (API docs, and later web pages)."""

from __future__ import annotations

import os
import secrets
from typing import Any

from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

# Everything a page loads comes from this service: no third-party origin, no inline script.
_BASE_POLICY = {
    "default-src": "'none'",
    "script-src": "'self'",
    "style-src": "'self'",
    # data: images: the SVG icons Swagger UI's stylesheet embeds (a stylesheet of our own origin).
    "img-src": "'self' data:",
    "font-src": "'self'",
    "connect-src": "'self'",
    "base-uri": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def new_nonce() -> str:
    """A fresh CSP nonce (128 random bits, URL-safe base64), one per response (CSP Level 3, 7.2)."""
    return secrets.token_urlsafe(16)


def content_security_policy(**directives: str) -> str:
    """The strict Content-Security-Policy of a page, as one header value.

    `directives` add or replace directives, with `_` for `-` in their names
    (e.g. `style_src="'self' 'nonce-...'"`, `worker_src="blob:"`).
    """
    policy = dict(_BASE_POLICY)
    policy.update({name.replace("_", "-"): value for name, value in directives.items()})
    return "; ".join(f"{name} {value}" for name, value in policy.items())


def page_security_headers(csp: str) -> dict[str, str]:
    """Headers for an HTML page: its CSP, no framing, no MIME sniffing, no Referer leaving the page.

    OWASP ASVS 4.0 V14.4 (HTTP security headers); `X-Frame-Options` stays for browsers that predate
    CSP's `frame-ancestors`.
    """
    return {
        "Content-Security-Policy": csp,
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Opener-Policy": "same-origin",
    }


class AssetFiles(StaticFiles):
    """Static files a page loads (scripts, styles, fonts), served as the type they are: no MIME
    sniffing, so a file can never run as a script it is not. `cache_control`, when given, is sent
    with each (e.g. `no-cache`: revalidated when changed)."""

    def __init__(self, *args: Any, cache_control: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cache_control = cache_control

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["X-Content-Type-Options"] = "nosniff"
        if self.cache_control is not None:
            response.headers["Cache-Control"] = self.cache_control
        return response
