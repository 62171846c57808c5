"""Mounts the web pages (admin console, account pages) and their stylesheet on the app."""

from __future__ import annotations

from fastapi import FastAPI

from userapi.core.headers import AssetFiles
from userapi.web import account, admin, admin_roles, links, mfa
from userapi.web.constants import STATIC


def install_web(app: FastAPI) -> None:
    """The /admin and /account pages, and /static/web (no CDN: every asset is served from here)."""
    app.include_router(admin.router)
    app.include_router(admin_roles.router)
    app.include_router(account.router)
    app.include_router(links.router)
    app.include_router(mfa.router)
    app.mount(
        STATIC, AssetFiles(packages=[("userapi.web", "static")], cache_control="no-cache"), name="web-static"
    )
