"""/docs and /redoc as served: every asset from this service (no CDN), no inline script, a strict CSP."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx
import pytest

PAGES = ("/docs", "/redoc")


class _References(HTMLParser):
    """Every URL an HTML page loads or links (src, href) and whether it has inline script/style."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline: list[str] = []
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]
        self.inline += [f"{tag} {name}" for name, _ in attrs if name.startswith("on") or name == "style"]
        if tag in ("script", "style") and "src" not in values:
            self._open = tag

    def handle_data(self, data: str) -> None:
        if self._open and data.strip():
            self.inline.append(f"<{self._open}> {data.strip()[:40]}")

    def handle_endtag(self, tag: str) -> None:
        self._open = None


@pytest.mark.parametrize("path", PAGES)
async def test_pages_load_only_this_services_assets_under_a_strict_csp(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    parser = _References()
    parser.feed(response.text)
    assert parser.inline == []
    assert parser.urls, "the page references no assets"
    for url in parser.urls:
        # Same origin: a path, never a scheme or a protocol-relative //host (a CDN).
        assert url.startswith("/"), url
        assert not url.startswith("//"), url
        if url.startswith("/docs/assets/"):
            asset = await client.get(url)
            assert asset.status_code == 200, url
            assert asset.headers["x-content-type-options"] == "nosniff"
    csp = dict(part.strip().split(" ", 1) for part in response.headers["content-security-policy"].split(";"))
    assert csp["default-src"] == "'none'"
    assert csp["script-src"] == "'self'"
    assert csp["connect-src"] == "'self'"
    assert csp["frame-ancestors"] == "'none'"
    # Inline styles only by this response's nonce or a listed hash (ReDoc's), never 'unsafe-inline'.
    self_, *inline = csp["style-src"].split(" ")
    assert self_ == "'self'"
    assert all(re.fullmatch(r"'(nonce-[\w-]{22}|sha256-[\w+/]{43}=)'", token) for token in inline), inline
    assert "unsafe" not in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"


async def test_each_redoc_response_has_its_own_style_nonce(client: httpx.AsyncClient) -> None:
    nonces = set()
    for _ in range(2):
        response = await client.get("/redoc")
        nonce = re.search(r"'nonce-([\w-]+)'", response.headers["content-security-policy"])
        assert nonce is not None
        assert f'nonce="{nonce[1]}"' in response.text
        nonces.add(nonce[1])
    assert len(nonces) == 2
