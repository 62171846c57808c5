"""Operational endpoints: liveness, readiness (database reachable and at head) and Prometheus metrics."""

from __future__ import annotations

import asyncio
import hmac

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import PlainTextResponse, Response

from userapi.core.exception_handlers import problem
from userapi.core.exceptions import Unauthenticated
from userapi.core.metrics import render
from userapi.core.runtime import RuntimeDep
from userapi.db.migrate import missing_revisions

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: str


@router.get("/health/live", response_model=Health, summary="Liveness probe")
async def live() -> Health:
    """`{"status": "ok"}` while the process serves requests; it checks nothing else (a probe that
    restarts the process should not fail because the database is down)."""
    return Health(status="ok")


@router.get(
    "/health/ready",
    response_model=Health,
    responses={503: {"description": "Database unreachable or not at the head revision"}},
    summary="Readiness probe",
)
async def ready(runtime: RuntimeDep) -> Health | Response:
    """`{"status": "ok"}` when the database answers and its schema is at the code's head migration;
    503 with the reason otherwise (send no traffic to this instance until it is ready)."""
    try:
        async with asyncio.timeout(runtime.settings.db_pool_timeout):
            async with runtime.engine.connect() as conn:
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


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}}, 401: {"description": "METRICS_TOKEN is set"}},
    summary="Prometheus metrics",
)
async def metrics(request: Request, runtime: RuntimeDep) -> Response:
    """The process's metrics in the Prometheus text format: requests by route and status, latency,
    sign-ins, throttling, database pool. When `METRICS_TOKEN` is set, scrapers must send it as
    `Authorization: Bearer <token>` (401 otherwise)."""
    token = runtime.settings.metrics_token.get_secret_value()
    if token and not hmac.compare_digest(
        request.headers.get("authorization", "").encode(), f"Bearer {token}".encode()
    ):
        raise Unauthenticated("Send the metrics token as `Authorization: Bearer <token>`")
    body, content_type = render()
    return Response(body, media_type=content_type)
