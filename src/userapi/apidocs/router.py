"""The interactive API docs (/docs: Swagger UI, /redoc: ReDoc), served with their assets by this service.

The Swagger UI, ReDoc and favicon files come from the `fastapi-offline` package (pinned in uv.lock);
the start-up scripts and stylesheet are ours (`static/`). No page loads anything from another origin,
so the docs work on a machine without internet, under a strict Content-Security-Policy.
"""

from __future__ import annotations

import hashlib
from functools import cache
from html import escape
from importlib.resources import files

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import HTMLResponse, Response

from userapi.core.headers import AssetFiles, content_security_policy, new_nonce, page_security_headers

DOCS_PATH = "/docs"
REDOC_PATH = "/redoc"
ASSETS_PATH = "/docs/assets"
_VENDOR = ("fastapi_offline", "static")

# ReDoc 2.x draws its "API docs by Redocly" badge with an image from Redocly's CDN, with no option
# to turn it off (Redocly/redoc#2141, declined). The bundle is served with that one URL replaced
# by an empty inline SVG: the badge's text stays, and no page ever asks a third party for it.
_REDOC_BUNDLE = "redoc.standalone.js"
_REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
_EMPTY_SVG = b"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E"
# Inline <style> ReDoc adds before it is started (so before it knows the nonce): the empty
# element, then perfect-scrollbar's stylesheet of ReDoc 2.5.3. A new ReDoc with other styles
# shows as a CSP violation in tests/apidocs (its message gives the new hash).
_REDOC_STYLE_HASHES = (
    "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='",
    "'sha256-QMIg+bpjm3JdElJ388KYke01izlUW0UoNOeKjpMxdgc='",
)

router = APIRouter(include_in_schema=False)


@cache
def _redoc_bundle() -> tuple[bytes, str]:
    """(ReDoc's bundle without its CDN logo URL, its ETag); read once per process (1 MB)."""
    bundle = files(_VENDOR[0]).joinpath(_VENDOR[1], _REDOC_BUNDLE).read_bytes()
    patched = bundle.replace(_REDOC_LOGO, _EMPTY_SVG)
    return patched, '"' + hashlib.sha256(patched).hexdigest()[:32] + '"'


def _urls(request: Request) -> tuple[str, str, str]:
    """(assets, spec, title), HTML-escaped; prefixed with the ASGI root_path (set by the operator's
    server configuration, never taken from a request header) so the docs work behind a path prefix."""
    root = request.scope.get("root_path", "").rstrip("/")
    app = request.app
    return escape(root + ASSETS_PATH), escape(root + (app.openapi_url or "")), escape(app.title)


@router.get(DOCS_PATH)
async def swagger_ui(request: Request) -> HTMLResponse:
    assets, spec, title = _urls(request)
    # The spec URL travels in a data attribute to swagger-init.js: no inline script on the page.
    html = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - Swagger UI</title>
<link rel="icon" type="image/png" href="{assets}/favicon.png">
<link rel="stylesheet" href="{assets}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{spec}"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{assets}/swagger-init.js"></script>
</body>
</html>
"""
    return HTMLResponse(html, headers=page_security_headers(content_security_policy()))


@router.get(REDOC_PATH)
async def redoc(request: Request) -> HTMLResponse:
    assets, spec, title = _urls(request)
    # ReDoc adds its styles as <style> elements (styled-components): redoc-init.js hands it this
    # response's nonce, which the CSP admits, so no 'unsafe-inline'. Its search index runs in a
    # Worker made from a blob: URL, which only a script already on the page can create.
    nonce = new_nonce()
    csp = content_security_policy(
        style_src=" ".join(("'self'", f"'nonce-{nonce}'", *_REDOC_STYLE_HASHES)), worker_src="blob:"
    )
    html = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - ReDoc</title>
<link rel="icon" type="image/png" href="{assets}/favicon.png">
<link rel="stylesheet" href="{assets}/redoc.css">
</head>
<body>
<noscript>ReDoc needs JavaScript; the raw specification is at <a href="{spec}">{spec}</a>.</noscript>
<div id="redoc" data-spec-url="{spec}"></div>
<script src="{assets}/{_REDOC_BUNDLE}"></script>
<script src="{assets}/redoc-init.js" nonce="{nonce}"></script>
</body>
</html>
"""
    return HTMLResponse(html, headers=page_security_headers(csp))


@router.get(f"{ASSETS_PATH}/{_REDOC_BUNDLE}")
async def redoc_bundle(request: Request) -> Response:
    body, etag = _redoc_bundle()
    headers = {"ETag": etag, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="text/javascript; charset=utf-8", headers=headers)


def install_docs(app: FastAPI) -> None:
    """Serve /docs, /redoc and their assets under /docs/assets (the app is built with docs_url=None
    and redoc_url=None, so FastAPI's CDN-loading pages are not served)."""
    app.include_router(router)
    # Ours first: a name of ours wins over the package's (the routes above win over both).
    app.mount(ASSETS_PATH, AssetFiles(packages=[("userapi.apidocs", "static"), _VENDOR]), name="docs-assets")
