"""Mounts the web pages (admin console, account pages) and their stylesheet on the app."""

from __future__ import annotations

import os

from fastapi import FastAPI
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from userapi.web import account, admin, admin_roles, links, mfa
from userapi.web.constants import STATIC


class _Static(StaticFiles):
    """The pages' own assets: taken as the type they are served with, and revalidated when changed."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-cache"
        return response


def install_web(app: FastAPI) -> None:
    """The /admin and /account pages, and /static/web (no CDN: every asset is served from here)."""
    app.include_router(admin.router)
    app.include_router(admin_roles.router)
    app.include_router(account.router)
    app.include_router(links.router)
    app.include_router(mfa.router)
    app.mount(STATIC, _Static(packages=[("userapi.web", "static")]), name="web-static")
