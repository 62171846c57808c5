"""Scenarios 2 and 4: the bcrypt-bound storms (login, sign-up), with /health/live probed alongside."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

from bench._common import PASSWORD, expect, log
from bench._context import LIVE, LOGIN, REGISTER, Context, bcrypt_seconds, compare
from bench._cpu import Interference
from bench._procs import Server
from bench._wrk import Wrk, WrkResult, closed_loop_rps, summarise

# --- 2 and 4: bcrypt-bound storms ------------------------------------------------------------

STORM_CONNECTIONS = 16
# The memory target for a worker during the login storm (MiB).
STORM_RSS_LIMIT_MB = 150


def _peak_rss(server: Server, seconds: float, into: dict[str, float]) -> None:
    """Samples each worker's RSS every 0.5 s for `seconds` (during a storm), keeping the peak (MiB)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name, mb in server.rss_mb().items():
            if name.startswith("worker"):
                into[name] = max(into.get(name, 0.0), mb)
        time.sleep(0.5)


def _storm(
    ctx: Context,
    service: Server,
    floor: Server,
    path: str,
    script: str,
    args: Callable[[], tuple[str, ...]],
    peak_rss: dict[str, dict[str, float]] | None = None,
) -> tuple[dict[str, dict[str, list[WrkResult]]], Interference]:
    """A B A B rounds of wrk -t2 -c16 on `path`, each with wrk -t1 -c4 on /health/live alongside;
    with `peak_rss`, each server's workers' peak RSS during the storms is recorded there."""
    seconds = max(ctx.opts.duration, 6 if ctx.opts.quick else 10)  # requests take seconds here
    runs: dict[str, dict[str, list[WrkResult]]] = {
        name: {"storm": [], "live": []} for name in ("service", "floor")
    }
    with ctx.interference(service, floor) as other:
        for n in range(ctx.opts.rounds):
            for name, server in (("service", service), ("floor", floor)):
                live = Wrk(server.port, LIVE, threads=1, connections=4, seconds=seconds)
                storm = Wrk(
                    server.port,
                    path,
                    threads=2,
                    connections=STORM_CONNECTIONS,
                    seconds=seconds,
                    script=script,
                    args=args(),
                    timeout_s=60,
                )
                try:
                    if peak_rss is not None:  # while both wrk runs go on (they started above)
                        _peak_rss(server, seconds - 1, peak_rss.setdefault(name, {}))
                    runs[name]["storm"].append(s := storm.result())
                    runs[name]["live"].append(h := live.result())
                finally:
                    storm.stop()
                    live.stop()
                    server.check_alive()
                rate = closed_loop_rps(s, STORM_CONNECTIONS)
                log(
                    f"  round {n + 1} {name:7s} {rate:6.2f}/s ({s.requests} done), "
                    f"/health/live p99 {h.p99_ms:.1f} ms"
                )
                # wrk leaves up to 16 requests in flight, and the server finishes their bcrypt work:
                # let it, or that work would be charged to the next run (the other server's).
                time.sleep(min(15.0, s.max_ms / 1000 + 0.5))
    return runs, other


def _storm_result(
    runs: dict[str, dict[str, list[WrkResult]]], other: Interference, bcrypt_cost: dict[str, float]
) -> dict[str, Any]:
    result = compare(
        summarise(runs["service"]["storm"], STORM_CONNECTIONS),
        summarise(runs["floor"]["storm"], STORM_CONNECTIONS),
    )
    result["live_during_storm"] = {name: summarise(r["live"]) for name, r in runs.items()}
    result["bcrypt"] = bcrypt_cost
    result["other_processes_cpu"] = other.as_dict()
    result["rate"] = "connections / mean latency (Little's law); wrk's completed/duration is completed_rps"
    return result


def scenario_2(ctx: Context) -> dict[str, Any]:
    log("scenario 2: login storm (wrk -t2 -c16) with GET /health/live (wrk -t1 -c4) alongside")
    bcrypt_cost = bcrypt_seconds(3 if ctx.opts.quick else 5)
    email = "bench-login@example.com"
    with ctx.servers(ctx.opts.workers) as (service, floor):
        ctx.token(service.port, email)
        for server in (service, floor):  # warm: the first logins of a process pay for imports and pools
            for _ in range(2):
                expect(server.port, "POST", LOGIN, 200, body={"email": email, "password": PASSWORD})
        peak: dict[str, dict[str, float]] = {}
        runs, other = _storm(ctx, service, floor, LOGIN, "login.lua", lambda: (email, PASSWORD), peak)
    result = _storm_result(runs, other, bcrypt_cost)
    result["target_logins_per_s"] = round(0.9 * ctx.cores / bcrypt_cost["verify_s"], 2)
    live_p99 = result["live_during_storm"]["service"]["p99_ms"]
    result["peak_rss_mb"] = peak
    result["max_worker_rss_mb"] = max(peak.get("service", {}).values(), default=0.0)
    result["passed"] = bool(
        result["service"]["rps"] >= result["target_logins_per_s"]
        and live_p99 < 50
        and result["service"]["errors"] == 0
        and 0 < result["max_worker_rss_mb"] < STORM_RSS_LIMIT_MB
    )
    return result


# --- 4: sign-up throughput ----------------------------------------------------------------


def scenario_4(ctx: Context) -> dict[str, Any]:
    log("scenario 4: registration (wrk -t2 -c16, a new email per request)")
    bcrypt_cost = bcrypt_seconds(3 if ctx.opts.quick else 5)
    with ctx.servers(ctx.opts.workers) as (service, floor):
        for server in (service, floor):
            body = {"email": f"bench-warm-{secrets.token_hex(4)}@example.com", "password": PASSWORD}
            expect(server.port, "POST", REGISTER, 201, body=body)
        runs, other = _storm(
            ctx, service, floor, REGISTER, "register.lua", lambda: (secrets.token_hex(4), PASSWORD)
        )
    result = _storm_result(runs, other, bcrypt_cost)
    result["target_per_s"] = round(0.9 * ctx.cores / bcrypt_cost["hash_s"], 2)
    result["passed"] = bool(
        result["service"]["rps"] >= result["target_per_s"] and result["service"]["errors"] == 0
    )
    return result
