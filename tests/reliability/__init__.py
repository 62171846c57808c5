"""Reliability tests: a real `userapi serve` process under overload, database faults and SIGTERM.

Shared here: timing one request into an `Outcome`, and judging a batch of outcomes (statuses,
problem documents for 503s, latency bounds) so every test fails with the same readable report.
"""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from userapi.db.embedded import ROOT_MODE_BASE, EmbeddedPostgres

# Throttling would turn a load test into a rate-limit test: every limit far out of reach.
NO_THROTTLE = {
    "RATE_LIMIT_LOGIN_ACCOUNT": "1000000/minute",
    "RATE_LIMIT_LOGIN_IP": "1000000/minute",
    "RATE_LIMIT_REGISTER_IP": "1000000/minute",
}
# Client side: never the bottleneck, and a hang becomes a recorded timeout instead of a stuck test.
CLIENT_LIMITS = httpx.Limits(max_connections=1024, max_keepalive_connections=1024)
HANG = 30.0


@dataclass(frozen=True)
class Outcome:
    kind: str  # what was asked, e.g. "me", "login", "register"
    started: float  # time.monotonic() when sent
    elapsed: float
    status: int | None  # None: no HTTP response at all (connection refused, reset, timeout)
    content_type: str = ""
    retry_after: str | None = None
    detail: str = ""  # the body of an error response, or the transport error
    key: str = ""  # e.g. the email a registration used

    @property
    def finished(self) -> float:
        return self.started + self.elapsed


async def send(
    http: httpx.AsyncClient, kind: str, method: str, url: str, key: str = "", **kw: Any
) -> Outcome:
    """One request, timed; never raises for an HTTP or transport failure (they are outcomes)."""
    started = time.monotonic()
    try:
        response = await http.request(method, url, **kw)
    except httpx.HTTPError as exc:
        return Outcome(kind, started, time.monotonic() - started, None, detail=repr(exc), key=key)
    return Outcome(
        kind,
        started,
        time.monotonic() - started,
        response.status_code,
        response.headers.get("content-type", ""),
        response.headers.get("retry-after"),
        response.text[:300] if response.status_code >= 400 else "",
        key,
    )


def violations(outcomes: Iterable[Outcome], allowed: dict[str, set[int]], max_seconds: float) -> list[str]:
    """Everything wrong with a batch: a status not allowed for its kind, no response, a 503 that is
    not a problem document with Retry-After, a request slower than `max_seconds`."""
    found = []
    for o in outcomes:
        what = f"{o.kind} {o.status} after {o.elapsed:.2f}s"
        if o.status is None:
            found.append(f"{what}: no response ({o.detail})")
        elif o.status not in allowed[o.kind]:
            found.append(f"{what}: unexpected status: {o.detail}")
        elif o.status == 503 and not (
            o.content_type.startswith("application/problem+json") and o.retry_after
        ):
            found.append(
                f"{what}: 503 without problem+json and Retry-After ({o.content_type!r}, {o.retry_after!r})"
            )
        if o.elapsed > max_seconds:
            found.append(f"{what}: slower than {max_seconds:.1f}s")
    return found


def tally(outcomes: Iterable[Outcome]) -> dict[str, int]:
    """Counts by kind and status, e.g. {"me 200": 120, "me 503": 8}, for messages and reports."""
    return dict(sorted(Counter(f"{o.kind} {o.status}" for o in outcomes).items()))


def report(found: list[str], outcomes: list[Outcome]) -> str:
    shown = "\n".join(found[:15])
    return f"{len(found)} problem(s) in {len(outcomes)} requests {tally(outcomes)}:\n{shown}"


def destroy_cluster(pg: EmbeddedPostgres) -> None:
    """Stop a private test cluster and remove what it left outside its tmp root (as root)."""
    pg.stop()
    base = pg.status().data_dir.parent
    if os.geteuid() == 0 and base.parent == ROOT_MODE_BASE:
        shutil.rmtree(base, ignore_errors=True)
