"""Operational endpoints: liveness, readiness (database reachable and at head) and Prometheus metrics."""

from __future__ import annotations

import asyncio
import hmac

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import PlainTextResponse, Response

from userapi.core.client import ClientDep
from userapi.core.exception_handlers import problem
from userapi.core.exceptions import Unauthenticated
from userapi.core.metrics import render
from userapi.core.runtime import RuntimeDep
from userapi.db.migrate import missing_revisions
from userapi.guard.constants import SecretKind
from userapi.guard.dependencies import SecretGuardDep

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
    responses={
        200: {"content": {"text/plain": {}}},
        401: {"description": "METRICS_TOKEN is set"},
        429: {"description": "Throttled"},
    },
    summary="Prometheus metrics",
)
async def metrics(
    request: Request, runtime: RuntimeDep, guard: SecretGuardDep, client: ClientDep
) -> Response:
    """The process's metrics in the Prometheus text format: requests by route and status, latency,
    sign-ins, throttling, database pool. When `METRICS_TOKEN` is set, scrapers must send it as
    `Authorization: Bearer <token>` (401 otherwise; guesses are throttled per client and audited)."""
    token = runtime.settings.metrics_token.get_secret_value()
    if token:
        presented = request.headers.get("authorization", "").encode()

        async def verify() -> bool:
            return hmac.compare_digest(presented, f"Bearer {token}".encode())

        # A secret like any other: guessed at, it is throttled per IP and each failure audited.
        await guard.check(
            SecretKind.metrics_token,
            verify,
            account=None,
            client=client,
            refuse=Unauthenticated("Send the metrics token as `Authorization: Bearer <token>`"),
        )
    body, content_type = render()
    return Response(body, media_type=content_type)
