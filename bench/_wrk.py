"""Runs wrk (installing the Debian package when missing and root) and reads the JSON its Lua done() prints."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from bench._common import HOST, LUA, BenchError, log, median
from userapi.core.system_packages import PackageInstallError, can_install, install_once

_MARKER = "BENCH_RESULT "


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    errors: int  # responses >= 400 plus socket errors (connect, read, write, timeout)
    error_detail: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def ensure_wrk() -> str:
    """The wrk binary; installs Debian's package (once, under the project's installer lock) when missing
    and running as root, else fails."""
    if not shutil.which("wrk") and can_install():
        log("wrk not found: installing the Debian package (apt-get install -y wrk)")
    try:
        found = install_once(("wrk",), lambda: shutil.which("wrk"))
    except PackageInstallError as exc:
        raise BenchError(f"{exc}; install wrk by hand and run the bench again") from None
    if found is None:
        raise BenchError("wrk not found: install it (Debian: apt-get install wrk) and run the bench again")
    return found


def wrk_version() -> str:
    proc = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    first = (proc.stdout or proc.stderr).splitlines()
    return first[0].split(" Copyright")[0].strip() if first else "unknown"


class Wrk:
    """One wrk process, started now and read later (so two can run at once)."""

    def __init__(
        self,
        port: int,
        path: str,
        *,
        threads: int,
        connections: int,
        seconds: int,
        script: str = "report.lua",
        headers: tuple[str, ...] = (),
        args: tuple[str, ...] = (),
        timeout_s: int = 10,
    ) -> None:
        cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, seconds)}s"]
        cmd += [f"--timeout={timeout_s}s", "-s", str(LUA / script)]
        for header in headers:
            cmd += ["-H", header]
        cmd.append(f"http://{HOST}:{port}{path}")
        if args:
            cmd += ["--", *args]
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def result(self) -> WrkResult:
        out, err = self.proc.communicate()
        line = next((x for x in out.splitlines() if x.startswith(_MARKER)), None)
        if self.proc.returncode != 0 or line is None:
            raise BenchError(f"wrk failed ({' '.join(self.cmd[:4])}...): {(err or out).strip()[-300:]}")
        raw = orjson.loads(line[len(_MARKER) :])
        seconds = raw["duration_us"] / 1e6
        detail = {k: int(raw[k]) for k in ("status", "connect", "read", "write", "timeout")}
        return WrkResult(
            requests=raw["requests"],
            seconds=round(seconds, 3),
            rps=round(raw["requests"] / seconds, 1) if seconds else 0.0,
            p50_ms=raw["p50_us"] / 1000,
            p90_ms=raw["p90_us"] / 1000,
            p99_ms=raw["p99_us"] / 1000,
            max_ms=raw["max_us"] / 1000,
            mean_ms=round(raw["mean_us"] / 1000, 3),
            errors=sum(detail.values()),
            error_detail=detail,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def run_wrk(port: int, path: str, **kwargs: Any) -> WrkResult:
    w = Wrk(port, path, **kwargs)
    try:
        return w.result()
    finally:
        w.stop()


def closed_loop_rps(result: WrkResult, connections: int) -> float:
    """Throughput by Little's law: connections / mean latency.

    For requests that take seconds (bcrypt under a storm) wrk's completed/duration is biased low:
    the requests still in flight when the run ends are lost with the work spent on them. Each wrk
    connection sends its next request as soon as the last one is answered, so the mean latency of
    the completed requests gives the steady-state rate without that edge effect.
    """
    return connections / (result.mean_ms / 1000) if result.requests else 0.0


def summarise(runs: list[WrkResult], connections: int | None = None) -> dict[str, Any]:
    """Medians over rounds (errors are summed: one error in any round counts).

    With `connections`, "rps" is the closed-loop rate (see closed_loop_rps) and wrk's own
    completed/duration figure is kept as "completed_rps".
    """
    completed = round(median([r.rps for r in runs]), 2)
    extra: dict[str, Any] = {}
    if connections is not None:
        extra["completed_rps"] = completed
        completed = round(median([closed_loop_rps(r, connections) for r in runs]), 2)
    return extra | {
        "rps": completed,
        "p50_ms": round(median([r.p50_ms for r in runs]), 3),
        "p99_ms": round(median([r.p99_ms for r in runs]), 3),
        "errors": sum(r.errors for r in runs),
        "requests": sum(r.requests for r in runs),
        "rounds": [r.as_dict() for r in runs],
    }
