"""Prometheus metrics of the service, correct with several worker processes (multiprocess mode)."""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

# With several workers `userapi serve` points PROMETHEUS_MULTIPROC_DIR at a fresh directory
# before any worker starts; each process then writes its samples there and a scrape of any
# worker aggregates them all.
MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

HTTP_REQUESTS = Counter(
    "userapi_http_requests_total",
    "HTTP requests by route template and status.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "userapi_http_request_duration_seconds",
    "HTTP request duration by route template.",
    ["method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
LOGINS = Counter("userapi_logins_total", "Login attempts by outcome.", ["outcome"])
# Every check of a secret (the guard domain): kind = password (sign-in), current_password, ...;
# outcome = success, failure or throttled (refused before the check).
SECRET_CHECKS = Counter(
    "userapi_secret_checks_total", "Checks of a secret by kind and outcome.", ["kind", "outcome"]
)
AUTH_EVENTS = Counter("userapi_auth_events_total", "Audit events recorded, by type.", ["type"])
REFRESH_REUSE = Counter(
    "userapi_refresh_token_reuse_detected_total", "Spent refresh tokens presented again (sessions revoked)."
)
THROTTLED = Counter("userapi_throttled_requests_total", "Requests refused with 429.", ["route"])
DB_POOL_IN_USE = Gauge(
    "userapi_db_pool_connections_in_use",
    "Database connections checked out of the pool.",
    multiprocess_mode="livesum",
)


def track_pool(engine: AsyncEngine) -> None:
    """Keep DB_POOL_IN_USE current through the pool's checkout/checkin events."""
    pool = engine.sync_engine.pool
    event.listen(pool, "checkout", lambda *_: DB_POOL_IN_USE.inc())
    event.listen(pool, "checkin", lambda *_: DB_POOL_IN_USE.dec())


def render() -> tuple[bytes, str]:
    """The exposition text of every metric (of all workers in multiprocess mode)."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
