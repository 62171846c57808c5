"""What every scenario shares: the run's context, the service/floor pair, accounts and A/B rounds."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from bench._common import HOST, PASSWORD, BenchError, Options, expect, log, median, ratio, request
from bench._cpu import Interference, interference
from bench._db import BenchPostgres
from bench._procs import Server, service_env
from bench._wrk import WrkResult, run_wrk, summarise

ME = "/api/v1/users/me"
LOGIN = "/api/v1/auth/login"
REGISTER = "/api/v1/auth/register"
LIVE = "/health/live"


@dataclass
class Context:
    opts: Options
    pg: BenchPostgres
    run_dir: Path
    cores: int
    db_url: str = ""
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(36))  # 48 characters
    accounts: set[str] = field(default_factory=set)
    seeded: bool = False
    shared: dict[int, tuple[Server, Server]] = field(default_factory=dict)
    sharing_workers: int | None = None

    @property
    def env(self) -> dict[str, str]:
        return service_env(self.db_url, self.secret, self.opts.service_env)

    @property
    def floor_env(self) -> dict[str, str]:
        return self.env | {"FLOOR_DATABASE_URL": self.db_url}

    @contextmanager
    def sharing(self, workers: int) -> Iterator[None]:
        """Within this block servers(workers) hands out one pair, started once (saves start-ups)."""
        self.sharing_workers = workers
        try:
            yield
        finally:
            self.sharing_workers = None
            for server in self.shared.pop(workers, ()):
                server.stop()

    @contextmanager
    def servers(self, workers: int) -> Iterator[tuple[Server, Server]]:
        """The service and the floor, both with `workers` processes, up and ready."""
        if workers in self.shared:
            yield self.shared[workers]
            return
        service = Server.service(workers, self.env, self.run_dir)
        # The floor verifies the service's tokens with the service's public keys, read once from its
        # JWKS at the floor's start-up: so the service is ready before the floor starts.
        jwks = {"FLOOR_JWKS_URL": f"http://{HOST}:{service.port}/.well-known/jwks.json"}
        floor = Server.floor(workers, self.floor_env | jwks, self.run_dir)
        try:
            service.start()
            service.wait_ready()
            floor.start()
            for server in (service, floor):
                server.wait_ready()
                server.wait_workers(workers)
        except BaseException:
            service.stop()
            floor.stop()
            raise
        if self.sharing_workers == workers:
            self.shared[workers] = (service, floor)
            yield service, floor
            return
        try:
            yield service, floor
        finally:
            service.stop()
            floor.stop()

    @contextmanager
    def interference(self, *servers: Server) -> Iterator[Interference]:
        """CPU used by other processes on the machine during the block (see _cpu.py); warns above 10 %."""
        postgres = self.pg.server_pids()

        def roots() -> list[int]:
            return [s.proc.pid for s in servers if s.proc is not None] + postgres

        with interference(roots, self.cores) as measured:
            yield measured
        if measured.share > 0.1:
            log(f"  warning: other processes used {measured.share:.0%} of the CPU meanwhile: figures are off")

    def token(self, port: int, email: str, *, admin: bool = False) -> str:
        """An access token of `email`, signing up through the API first if needed."""
        if email not in self.accounts:
            status, body = request(port, "POST", REGISTER, {"email": email, "password": PASSWORD})
            if status not in (201, 409):
                raise BenchError(f"sign-up of {email} failed: {status} {body}")
            if admin:
                sql(self.db_url, "UPDATE users SET role = 'admin' WHERE email = $1", email)
            self.accounts.add(email)
        tokens = expect(port, "POST", LOGIN, 200, body={"email": email, "password": PASSWORD})
        return str(tokens["access_token"])

    def alternate(
        self, service: Server, floor: Server, path: str, seconds: int, **wrk: Any
    ) -> dict[str, Any]:
        """Warm both, then A B A B ... for the configured rounds; medians per server and ratios."""
        for server in (service, floor):
            try:
                run_wrk(server.port, path, seconds=self.opts.warmup, **wrk)
            finally:
                server.check_alive()
        runs: dict[str, list[WrkResult]] = {"service": [], "floor": []}
        pairs = (("service", service), ("floor", floor))
        cpu_before = {name: server.cpu_seconds() for name, server in pairs}
        restarts_before = {name: server.worker_restarts() for name, server in pairs}
        with self.interference(service, floor) as other:
            for n in range(self.opts.rounds):
                for name, server in pairs:
                    try:
                        runs[name].append(result := run_wrk(server.port, path, seconds=seconds, **wrk))
                    finally:
                        server.check_alive()
                    log(f"  round {n + 1} {name:7s} {result.rps:9.1f} req/s  p99 {result.p99_ms:.2f} ms")
        out = compare(summarise(runs["service"]), summarise(runs["floor"]))
        out["other_processes_cpu"] = other.as_dict()
        # CPU seconds each worker spent in the measured rounds: shows whether every worker served,
        # and per request it is the figure least disturbed by other load on the machine.
        out["worker_cpu_s"] = {
            name: {
                str(pid): round(t - cpu_before[name].get(pid, 0.0), 2)
                for pid, t in server.cpu_seconds().items()
            }
            for name, server in pairs
        }
        for name in ("service", "floor"):
            requests = out[name]["requests"]
            cpu = sum(out["worker_cpu_s"][name].values())
            out[name]["cpu_ms_per_request"] = round(1000 * cpu / requests, 4) if requests else float("nan")
        out["cpu_ratio"] = round(
            ratio(out["service"]["cpu_ms_per_request"], out["floor"]["cpu_ms_per_request"]), 3
        )
        out["worker_restarts_during_rounds"] = {
            name: server.worker_restarts() - restarts_before[name] for name, server in pairs
        }
        for name, cpu in out["worker_cpu_s"].items():
            if (
                wrk.get("connections", 1) > 1
                and len(cpu) > 1
                and min(cpu.values()) < 0.25 * max(cpu.values())
            ):
                log(f"  warning: the {name}'s workers did unequal work: {cpu} (CPU seconds)")
        return out


def compare(service: dict[str, Any], floor: dict[str, Any]) -> dict[str, Any]:
    return {
        "service": service,
        "floor": floor,
        "rps_ratio": round(ratio(service["rps"], floor["rps"]), 3),
        "p50_ratio": round(ratio(service["p50_ms"], floor["p50_ms"]), 3),
        "p99_ratio": round(ratio(service["p99_ms"], floor["p99_ms"]), 3),
    }


def sql(dsn: str, statement: str, *args: Any) -> Any:
    async def go() -> Any:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetch(statement, *args)
        finally:
            await conn.close()

    return asyncio.run(go())


def bcrypt_seconds(runs: int) -> dict[str, float]:
    """One bcrypt verify and one hash at the service's default cost, timed in this process."""
    from userapi.core.config import Settings
    from userapi.core.security import hash_password_sync, verify_password_sync

    rounds = Settings.model_fields["bcrypt_rounds"].default
    stored = hash_password_sync(PASSWORD, rounds)
    verify, hashing = [], []
    for _ in range(runs):
        started = time.perf_counter()
        verify_password_sync(PASSWORD, stored)
        verify.append(time.perf_counter() - started)
        started = time.perf_counter()
        hash_password_sync(PASSWORD, rounds)
        hashing.append(time.perf_counter() - started)
    return {"rounds": rounds, "verify_s": round(median(verify), 4), "hash_s": round(median(hashing), 4)}
