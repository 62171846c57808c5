"""The six scenarios of `make bench`: each runs the service and the floor alternately and judges a target.

Scenarios 2 and 4 live in _storms.py, scenario 3 in _listing.py; this module has 1, 5 and 6.
"""

from __future__ import annotations

from typing import Any

from bench._common import BenchError, expect, log, median
from bench._context import ME, Context
from bench._db import DATABASE, migrate
from bench._listing import scenario_3
from bench._procs import Server, service_env
from bench._storms import scenario_2, scenario_4

__all__ = ["prepare_database", "scenario_1", "scenario_2", "scenario_3", "scenario_4", "scenario_5"]
__all__ += ["scenario_6"]


# --- 1 and 6: GET /users/me, and the RSS it leaves --------------------------------------------


def scenario_1(ctx: Context) -> dict[str, Any]:
    out: dict[str, Any] = {"load": "wrk -t2 -c64", "seconds": ctx.opts.duration, "configs": {}}
    for workers in ctx.opts.s1_workers:
        log(f"scenario 1: GET {ME} with {workers} worker(s)")
        with ctx.servers(workers) as (service, floor):
            token = ctx.token(service.port, "bench-me@example.com")
            for server in (service, floor):
                if expect(server.port, "GET", ME, 200, token=token)["email"] != "bench-me@example.com":
                    raise BenchError(f"{server.name} answered {ME} with another user")
            result = ctx.alternate(
                service,
                floor,
                ME,
                ctx.opts.duration,
                threads=2,
                connections=64,
                headers=(f"Authorization: Bearer {token}",),
            )
            result["rss_mb"] = {"service": service.rss_mb(), "floor": floor.rss_mb()}
            result["worker_restarts"] = {
                "service": service.worker_restarts(),
                "floor": floor.worker_restarts(),
            }
        result["passed"] = bool(
            result["rps_ratio"] >= 0.5 and result["p99_ratio"] <= 4 and result["service"]["errors"] == 0
        )
        out["configs"][str(workers)] = result
    out["passed"] = all(c["passed"] for c in out["configs"].values())
    return out


def scenario_6(s1: dict[str, Any]) -> dict[str, Any]:
    per_config = {}
    worst = 0.0
    for workers, result in s1["configs"].items():
        rss = result["rss_mb"]["service"]
        worker_rss = [v for k, v in rss.items() if k.startswith("worker")]
        worst = max(worst, *worker_rss)
        per_config[workers] = {"service": rss, "floor": result["rss_mb"]["floor"]}
    return {"after": "scenario 1", "rss_mb": per_config, "max_worker_mb": worst, "passed": worst < 120}


# --- 5: cold start ---------------------------------------------------------------------------


def scenario_5(ctx: Context) -> dict[str, Any]:
    log(f"scenario 5: cold start, {ctx.opts.cold_runs} runs each")
    serve, all_up, restarts = [], [], 0
    # The servers started here are waited for when stopped, so their CPU counts as the bench's own.
    with ctx.interference() as other:
        for _ in range(ctx.opts.cold_runs):
            server = Server.service(ctx.opts.workers, ctx.env, ctx.run_dir)
            try:
                server.start()
                serve.append(server.wait_ready())
                all_up.append(server.wait_workers(ctx.opts.workers))
            finally:
                server.stop()
                restarts += server.worker_restarts()
    migrate_times = []
    for n in range(ctx.opts.cold_runs):
        name = f"{DATABASE}_cold_{n}"
        url = ctx.pg.create(name)
        try:
            migrate_times.append(migrate(service_env(url, ctx.secret, ctx.opts.service_env), ctx.run_dir))
        finally:
            ctx.pg.drop(name)
    out: dict[str, Any] = {
        "serve_to_ready_s": {"median": round(median(serve), 3), "runs": [round(s, 3) for s in serve]},
        # Not the target, but what a load balancer sees: until then one worker takes all the traffic.
        "serve_to_all_workers_idle_s": {
            "median": round(median(all_up), 3),
            "runs": [round(s, 3) for s in all_up],
        },
        "migrate_empty_s": {
            "median": round(median(migrate_times), 3),
            "runs": [round(s, 3) for s in migrate_times],
        },
        "workers": ctx.opts.workers,
        "worker_restarts": restarts,
        "other_processes_cpu": other.as_dict(),
    }
    out["passed"] = bool(out["serve_to_ready_s"]["median"] < 2 and out["migrate_empty_s"]["median"] < 2)
    return out


def prepare_database(ctx: Context) -> float:
    """A fresh `userapi_bench`, migrated by `userapi migrate`; returns the migration's seconds."""
    ctx.db_url = ctx.pg.create(DATABASE)
    return migrate(ctx.env, ctx.run_dir)
