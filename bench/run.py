"""`make bench`: runs the scenarios against the service and the floor, writes bench/results/<time>.json.

    python -m bench.run                      # every scenario (about 10 minutes on 2 cores)
    python -m bench.run --quick              # a smoke run of every scenario (under 2 minutes)
    python -m bench.run --scenarios 1,6      # /users/me and the memory it leaves

Environment: BENCH_DURATION (s, default 10), BENCH_ROUNDS (3), BENCH_USERS (1000000),
BENCH_WORKERS (cores), BENCH_DATABASE_URL (a server to use instead of .data/bench-postgres).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

from bench import report
from bench._common import REPO, RESULTS, BenchError, Options, cores, log
from bench._context import Context
from bench._db import BenchPostgres
from bench._wrk import ensure_wrk, wrk_version
from bench.scenarios import (
    prepare_database,
    scenario_1,
    scenario_2,
    scenario_3,
    scenario_4,
    scenario_5,
    scenario_6,
)

ALL = [1, 2, 3, 4, 5, 6]


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    try:
        return int(value) if value else default
    except ValueError:
        raise BenchError(f"{name} must be a whole number, not {value!r}") from None


def parse_options(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--scenarios", default=",".join(map(str, ALL)), help="comma-separated, e.g. 1,6")
    parser.add_argument("--quick", action="store_true", help="a smoke run: short rounds, 10,000 users")
    parser.add_argument("--duration", type=int, help="seconds per measured run (BENCH_DURATION)")
    parser.add_argument("--rounds", type=int, help="A/B rounds per measurement (BENCH_ROUNDS)")
    parser.add_argument("--users", type=int, help="users seeded for scenario 3 (BENCH_USERS)")
    parser.add_argument("--workers", type=int, help="workers for scenarios 2-5 (BENCH_WORKERS)")
    parser.add_argument("--s1-workers", default="1,2", help="worker counts of scenario 1 (default 1,2)")
    parser.add_argument("--keep", action="store_true", help="keep the bench database and cluster")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra service setting for experiments (e.g. ACCESS_LOG=false); recorded in the results",
    )
    args = parser.parse_args(argv)
    try:
        scenarios = sorted({int(s) for s in args.scenarios.split(",") if s.strip()})
        s1_workers = [int(w) for w in args.s1_workers.split(",") if w.strip()]
    except ValueError:
        parser.error("--scenarios and --s1-workers take comma-separated numbers")
    if unknown := set(scenarios) - set(ALL):
        parser.error(f"no scenario {sorted(unknown)}; there are {ALL}")
    if 6 in scenarios and 1 not in scenarios:
        scenarios = sorted({1, *scenarios})  # memory is measured after the /users/me load
    if any("=" not in kv for kv in args.service_env):
        parser.error("--service-env takes KEY=VALUE")
    quick = args.quick
    return Options(
        scenarios=scenarios,
        quick=quick,
        duration=args.duration or _env_int("BENCH_DURATION", 3 if quick else 10),
        rounds=args.rounds or _env_int("BENCH_ROUNDS", 1 if quick else 3),
        users=args.users or _env_int("BENCH_USERS", 10_000 if quick else 1_000_000),
        workers=args.workers or _env_int("BENCH_WORKERS", cores()),
        s1_workers=s1_workers,
        warmup=1 if quick else 2,
        cold_runs=2 if quick else 5,
        keep=args.keep,
        strict=args.strict,
        service_env=dict(kv.split("=", 1) for kv in args.service_env),
    )


def run(opts: Options) -> dict[str, Any]:
    ensure_wrk()
    started = time.time()
    results: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
        "options": dict(vars(opts)),
        "machine": report.machine(),
    }
    if (load := results["machine"]["loadavg_start"][0]) > 0.5:
        log(f"load average is {load}: something else is busy, so the figures are noisy")
    run_dir = REPO / ".data" / "bench-run"
    shutil.rmtree(run_dir, ignore_errors=True)
    pg = BenchPostgres()
    ctx = Context(opts=opts, pg=pg, run_dir=run_dir, cores=cores())
    steps: dict[int, Callable[[], dict[str, Any]]] = {
        1: lambda: scenario_1(ctx),
        2: lambda: scenario_2(ctx),
        3: lambda: scenario_3(ctx),
        4: lambda: scenario_4(ctx),
        5: lambda: scenario_5(ctx),
        6: lambda: scenario_6(results["scenarios"]["1"]),
    }
    try:
        pg.start()
        results["database"] = {"source": pg.source}
        results["versions"] = report.versions(pg.server_version(), wrk_version())
        results["database"]["migrate_s"] = round(prepare_database(ctx), 3)
        results["service_config"] = (
            "ENVIRONMENT=production, BCRYPT_ROUNDS default, ACCESS_LOG default (on), LOG_LEVEL default, "
            "JWT_SECRET 48 random characters, RATE_LIMIT_* = 1000000/minute"
            + "".join(f", {k}={v}" for k, v in opts.service_env.items())
        )
        results["scenarios"] = {}
        # Scenarios 2 to 4 share one service/floor pair (started once, as a long-running deployment).
        with ctx.sharing(opts.workers):
            for number in opts.scenarios:
                results["scenarios"][str(number)] = steps[number]()
                log(f"scenario {number}: {'pass' if results['scenarios'][str(number)]['passed'] else 'FAIL'}")
    finally:
        if not opts.keep:
            try:
                pg.drop("userapi_bench")
                pg.stop()
            except Exception as exc:  # cleanup must not hide the run's own error
                log(f"cleanup: {exc}")
    results["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    results["seconds"] = round(time.time() - started, 1)
    return results


def main(argv: list[str] | None = None) -> int:
    try:
        opts = parse_options(argv)
        results = run(opts)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = RESULTS / f"{stamp}{'-quick' if opts.quick else ''}.json"
    path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    print(report.markdown(results))
    print(f"results: {path.relative_to(REPO)} ({results['seconds']:.0f} s)")
    failed = [n for n, r in results["scenarios"].items() if not r["passed"]]
    return 1 if opts.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
