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


@router.get("/health/live", response_model=Health)
async def live() -> Health:
    return Health(status="ok")


@router.get(
    "/health/ready",
    response_model=Health,
    responses={503: {"description": "Database unreachable or not at the head revision"}},
)
async def ready(runtime: RuntimeDep) -> Health | Response:
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
)
async def metrics(
    request: Request, runtime: RuntimeDep, guard: SecretGuardDep, client: ClientDep
) -> Response:
    """Prometheus text format; when METRICS_TOKEN is set, scrapers must send it as a bearer token."""
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
