"""Small helpers every bench module shares: options, logging to stderr, one HTTP request, statistics."""

from __future__ import annotations

import http.client
import os
import socket
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
LUA = BENCH / "lua"
RESULTS = BENCH / "results"
HOST = "127.0.0.1"
# A password that passes the service's rules (length, not a common one); every bench account uses it.
PASSWORD = "Kx7-quartz-Orbit-42"


@dataclass
class Options:
    scenarios: list[int]
    quick: bool
    duration: int  # seconds of one measured wrk run of scenario 1 (others derive from it)
    rounds: int
    users: int  # rows seeded for scenario 3
    workers: int  # worker processes for scenarios 2-5
    s1_workers: list[int]
    warmup: int
    cold_runs: int
    keep: bool
    strict: bool
    service_env: dict[str, str] = field(default_factory=dict)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def request(
    port: int,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    token: str | None = None,
    timeout: float = 30,
) -> tuple[int, Any]:
    """One HTTP request to 127.0.0.1:port; returns (status, parsed JSON or text)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=orjson.dumps(body) if body is not None else None, headers=headers)
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    try:
        return response.status, orjson.loads(raw)
    except orjson.JSONDecodeError:
        return response.status, raw.decode(errors="replace")


def expect(port: int, method: str, path: str, status: int, **kwargs: Any) -> Any:
    """Like request(), but a different status stops the bench with what the server said."""
    got, payload = request(port, method, path, **kwargs)
    if got != status:
        raise BenchError(f"{method} {path} on port {port}: expected {status}, got {got}: {payload}")
    return payload


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


class BenchError(Exception):
    """Ends the bench with one line (after cleaning up)."""
