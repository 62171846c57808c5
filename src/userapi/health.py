"""Liveness and readiness probes: the process answers; the database answers and is at the head revision."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import Response

from userapi.core.exception_handlers import problem
from userapi.db.migrate import missing_revisions

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


@router.get("/health/live", response_model=Health)
async def live() -> Health:
    return Health(status="ok")


@router.get(
    "/health/ready",
    response_model=Health,
    responses={503: {"description": "Database unreachable or not at the head revision"}},
)
async def ready(request: Request) -> Health | Response:
    engine = request.app.state.engine
    try:
        async with asyncio.timeout(request.app.state.settings.db_pool_timeout):
            async with engine.connect() as conn:
                missing = await missing_revisions(conn)
    except Exception as exc:  # any failure to reach the database means "not ready"
        return problem(503, "not_ready", "Not ready", f"database unreachable ({type(exc).__name__})")
    if missing:
        return problem(
            503,
            "not_ready",
            "Not ready",
            f"database is not at the head revision; missing: {', '.join(missing)}",
        )
    return Health(status="ok")
