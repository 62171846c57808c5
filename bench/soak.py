"""Soak: a mixed workload against `userapi serve --workers N` for a long while, outside CI (`make soak`).

Register, login, /users/me, refresh and an admin listing, from an asyncio httpx load generator in this
process, against a production-configured service on its own embedded cluster (.data/soak-postgres, a
fresh database, migrated). Passes when no request got an unexpected status, no worker's RSS grew
more than 10% from the end of the warm-up (the first 20% of the run) to the end, the database
connections did not grow over the same span, and the service exited 0 on SIGTERM. Prints markdown
tables; exits 1 when a check fails.

    SOAK_SECONDS=300 SOAK_WORKERS=2 SOAK_CONCURRENCY=32 SOAK_BCRYPT_ROUNDS=12 make soak
    python -m bench.soak --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench._common import HOST, REPO, free_port
from bench._db import with_database
from bench._procs import children

API = "/api/v1"
PASSWORD = "soak-Passw0rd-q8v2x"
WARMUP_SHARE = 0.2
RSS_GROWTH_LIMIT = 0.10
# Tokens are renewed well before the 15-minute access-token lifetime, so long soaks stay valid.
TOKEN_MAX_AGE = 600.0
# Operation mix (weights); every operation has exactly one expected status.
MIX = {"me": 55, "refresh": 15, "login": 10, "register": 10, "admin_list": 10}
EXPECTED = {"register": 201, "login": 200, "me": 200, "refresh": 200, "admin_list": 200}


def log(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class SoakError(Exception):
    """The soak could not run (as opposed to ran and failed a check)."""


# --- options -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    seconds: float
    workers: int
    concurrency: int
    bcrypt_rounds: int
    keep: bool


def parse_options(argv: list[str]) -> Options:
    env = os.environ
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=float(env.get("SOAK_SECONDS", 300)))
    parser.add_argument("--workers", type=int, default=int(env.get("SOAK_WORKERS", 2)))
    parser.add_argument("--concurrency", type=int, default=int(env.get("SOAK_CONCURRENCY", 32)))
    parser.add_argument("--bcrypt-rounds", type=int, default=int(env.get("SOAK_BCRYPT_ROUNDS", 12)))
    parser.add_argument("--keep", action="store_true", help="keep the soak database and leave the cluster up")
    args = parser.parse_args(argv)
    if args.seconds < 10 or args.workers < 1 or args.concurrency < 1:
        parser.error("--seconds must be >= 10, --workers and --concurrency >= 1")
    return Options(args.seconds, args.workers, args.concurrency, args.bcrypt_rounds, args.keep)


# --- the database and the service ------------------------------------------------------------------


def service_env(database_url: str, opts: Options, run_dir: Path) -> dict[str, str]:
    """Production settings; none of the caller's userapi settings (or PG* variables) leak in."""
    from userapi.core.config import Settings

    ours = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in ours and not k.startswith("PG")}
    return env | {
        "ENVIRONMENT": "production",
        "DATABASE_URL": database_url,
        "JWT_SECRET": secrets.token_urlsafe(36),  # 48 characters
        "BCRYPT_ROUNDS": str(opts.bcrypt_rounds),
        # A soak measures stability under load, not throttling.
        "RATE_LIMIT_LOGIN_ACCOUNT": "1000000/minute",
        "RATE_LIMIT_LOGIN_IP": "1000000/minute",
        "RATE_LIMIT_REGISTER_IP": "1000000/minute",
        "RATE_LIMIT_SECRET_ACCOUNT": "1000000/minute",
        "RATE_LIMIT_SECRET_IP": "1000000/minute",
        "LOG_LEVEL": "WARNING",
        "ACCESS_LOG": "false",
        "PROMETHEUS_MULTIPROC_DIR": str(run_dir / "metrics"),
    }


def userapi(*args: str) -> list[str]:
    return [sys.executable, "-m", "userapi", *args]


def launch(argv: list[str], env: dict[str, str], run_dir: Path, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as out:
        # cwd holds no .env: the service reads only the environment given here.
        return subprocess.Popen(argv, env=env, cwd=run_dir, stdout=out, stderr=subprocess.STDOUT)


def worker_pids(server: subprocess.Popen[bytes], workers: int) -> list[int]:
    """The processes that serve requests: the server itself, or its spawned workers."""
    if workers == 1:
        return [server.pid]
    deadline = time.monotonic() + 30
    while True:
        pids = []
        for pid in children(server.pid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
                pids.append(pid)
        if len(pids) == workers:
            return sorted(pids)
        if time.monotonic() > deadline:
            raise SoakError(f"expected {workers} worker processes, found {len(pids)}")
        time.sleep(0.2)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise SoakError(f"no VmRSS for process {pid}")


# --- the load ----------------------------------------------------------------------------------------


@dataclass
class Account:
    email: str
    access: str = ""
    refresh: str = ""
    issued: float = 0.0  # time.monotonic() of the last token pair


@dataclass
class Stats:
    statuses: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    unexpected: list[str] = field(default_factory=list)

    def record(self, op: str, status: int | None, seconds: float, detail: str = "") -> bool:
        label = str(status) if status is not None else "no response"
        self.statuses[op][label] += 1
        self.latencies[op].append(seconds)
        if status != EXPECTED[op]:
            if len(self.unexpected) < 20:
                self.unexpected.append(f"{op} -> {label}: {detail[:200]}")
            return False
        return True


class Load:
    def __init__(self, http: httpx.AsyncClient, stats: Stats) -> None:
        self.http = http
        self.stats = stats
        self.accounts: asyncio.Queue[Account] = asyncio.Queue()
        self.admin = Account("")
        self.admin_lock = asyncio.Lock()
        self.running = True

    async def call(self, op: str, method: str, url: str, **kw: Any) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            response = await self.http.request(method, url, **kw)
        except httpx.HTTPError as exc:
            self.stats.record(op, None, time.perf_counter() - started, repr(exc))
            return None
        ok = self.stats.record(op, response.status_code, time.perf_counter() - started, response.text)
        return response if ok else None

    async def register(self) -> Account | None:
        account = Account(f"soak-{uuid.uuid4().hex[:16]}@example.com")
        body = {"email": account.email, "password": PASSWORD, "full_name": "Soak Test"}
        if await self.call("register", "POST", f"{API}/auth/register", json=body) is None:
            return None
        return account

    async def login(self, account: Account) -> None:
        body = {"email": account.email, "password": PASSWORD}
        if response := await self.call("login", "POST", f"{API}/auth/login", json=body):
            self._keep(account, response)

    async def refresh(self, account: Account) -> None:
        body = {"refresh_token": account.refresh}
        if response := await self.call("refresh", "POST", f"{API}/auth/refresh", json=body):
            self._keep(account, response)

    async def me(self, account: Account) -> None:
        headers = {"Authorization": f"Bearer {account.access}"}
        await self.call("me", "GET", f"{API}/users/me", headers=headers)

    async def admin_list(self) -> None:
        async with self.admin_lock:
            if time.monotonic() - self.admin.issued > TOKEN_MAX_AGE:
                await self.refresh(self.admin)
        headers = {"Authorization": f"Bearer {self.admin.access}"}
        page = await self.call("admin_list", "GET", f"{API}/users", params={"limit": 20}, headers=headers)
        cursor = page.json().get("next_cursor") if page is not None else None
        if cursor:  # and the next page, as a client paging through would
            params = {"limit": 20, "cursor": cursor}
            await self.call("admin_list", "GET", f"{API}/users", params=params, headers=headers)

    @staticmethod
    def _keep(account: Account, response: httpx.Response) -> None:
        tokens = response.json()
        account.access, account.refresh, account.issued = (
            tokens["access_token"],
            tokens["refresh_token"],
            time.monotonic(),
        )

    async def one(self, op: str) -> None:
        if op == "admin_list":
            await self.admin_list()
            return
        if op == "register":
            if (new := await self.register()) is not None:
                self.accounts.put_nowait(new)
            return
        # An account is used by one client at a time: a refresh token presented twice would be reuse.
        account = await self.accounts.get()
        try:
            if op == "login" or not account.access:
                await self.login(account)
            elif op == "refresh" or time.monotonic() - account.issued > TOKEN_MAX_AGE:
                await self.refresh(account)
            else:
                await self.me(account)
        finally:
            self.accounts.put_nowait(account)

    async def client(self, seed: int) -> None:
        rng = random.Random(seed)
        ops, weights = list(MIX), list(MIX.values())
        while self.running:
            await self.one(rng.choices(ops, weights)[0])


# --- sampling ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    at: float  # seconds since the load started
    rss: dict[int, int]  # KiB per worker pid
    connections: int  # backends on the soak database (pg_stat_activity)


async def sample(admin: asyncpg.Connection, database: str, pids: list[int], t0: float) -> Sample:
    count = await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = $1", database)
    return Sample(time.monotonic() - t0, {pid: rss_kib(pid) for pid in pids}, int(count))


async def sampler(
    admin: asyncpg.Connection, database: str, pids: list[int], t0: float, every: float, out: list[Sample]
) -> None:
    while True:
        out.append(await sample(admin, database, pids, t0))
        await asyncio.sleep(every)


# --- report ------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def endpoint_table(stats: Stats, seconds: float) -> str:
    rows = [
        "| endpoint | requests | req/s | statuses | unexpected | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    total = unexpected_total = 0
    for op in MIX:
        counts, lat = stats.statuses.get(op, Counter()), stats.latencies.get(op, [])
        n = sum(counts.values())
        bad = n - counts.get(str(EXPECTED[op]), 0)
        total, unexpected_total = total + n, unexpected_total + bad
        shown = ", ".join(f"{status}: {count}" for status, count in sorted(counts.items()))
        ms = [1000 * percentile(lat, q) for q in (50, 95, 99)] + [1000 * max(lat, default=0)]
        rows.append(
            f"| {op} | {n} | {n / seconds:.1f} | {shown} | {bad} | "
            + " | ".join(f"{v:.0f}" for v in ms)
            + " |"
        )
    rows.append(f"| **all** | {total} | {total / seconds:.1f} | | {unexpected_total} | | | | |")
    return "\n".join(rows)


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


def resource_checks(samples: list[Sample], warmup_end: float, pool_limit: int) -> tuple[str, list[Check]]:
    warm = next((s for s in samples if s.at >= warmup_end), samples[-1])
    end = samples[-1]
    warm_connections = max(s.connections for s in samples if s.at <= warm.at)
    rows = [
        "| measure | after warm-up | end | change | limit |",
        "|---|---:|---:|---:|---|",
    ]
    checks = []
    for pid in warm.rss:
        before, after = warm.rss[pid], end.rss[pid]
        growth = (after - before) / before
        rows.append(
            f"| worker {pid} RSS | {before / 1024:.1f} MiB | {after / 1024:.1f} MiB | {growth:+.1%} "
            f"| <= {RSS_GROWTH_LIMIT:+.0%} |"
        )
        checks.append(
            Check(f"worker {pid} memory", growth <= RSS_GROWTH_LIMIT, f"{growth:+.1%} from warm-up to end")
        )
    peak = max(s.connections for s in samples)
    # The pools are bounded and open connections lazily, so the count wanders with the load
    # (its peak creeps up as rarer overlaps of slow logins occur). A leak climbs steadily: the
    # typical (median) count of the second half after warm-up must stay within one of the first's.
    middle = warm.at + (end.at - warm.at) / 2
    first_half = statistics.median(s.connections for s in samples if warm.at <= s.at <= middle)
    second_half = statistics.median(s.connections for s in samples if s.at > middle)
    rows.append(
        f"| database connections | {warm_connections} | {end.connections} | "
        f"{end.connections - warm_connections:+d} | median 2nd half {second_half:g} <= 1st half "
        f"{first_half:g} + 1; peak {peak} <= {pool_limit} (pools) |"
    )
    checks.append(
        Check(
            "database connections",
            second_half <= first_half + 1 and peak <= pool_limit,
            f"{warm_connections} after warm-up, {end.connections} at the end, peak {peak}; "
            f"median after warm-up: first half {first_half:g}, second half {second_half:g}",
        )
    )
    rows.append(f"\nsamples: {len(samples)}, warm-up ends at {warm.at:.0f}s, last at {end.at:.0f}s")
    return "\n".join(rows), checks


# --- the run -------------------------------------------------------------------------------------------


async def wait_ready(base: str, server: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 90
    async with httpx.AsyncClient(base_url=base, timeout=2) as http:
        while True:
            if server.poll() is not None:
                raise SoakError(f"the service exited with {server.returncode}: see {log_path}")
            try:
                if (await http.get("/health/ready")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SoakError(f"the service was not ready in 90 s: see {log_path}")
            await asyncio.sleep(0.2)


async def seed(load: Load, soak_url: str, accounts: int) -> None:
    """An admin (registered, promoted with SQL, signed in) and `accounts` signed-in users."""
    admin = await load.register()
    if admin is None:
        raise SoakError(f"could not register the admin: {load.stats.unexpected}")
    conn = await asyncpg.connect(soak_url)
    try:
        await conn.execute("UPDATE users SET role = 'admin' WHERE email = $1", admin.email)
    finally:
        await conn.close()
    await load.login(admin)
    load.admin = admin
    created = await asyncio.gather(*(load.register() for _ in range(accounts)))
    users = [a for a in created if a is not None]
    await asyncio.gather(*(load.login(a) for a in users))
    for account in users:
        load.accounts.put_nowait(account)
    if load.stats.unexpected or not admin.access:
        raise SoakError(f"seeding failed: {load.stats.unexpected}")


async def soak(opts: Options) -> int:
    from userapi.db.embedded import EmbeddedPostgres

    run_dir = REPO / ".data" / "soak-run"
    run_dir.mkdir(parents=True, exist_ok=True)
    cluster = EmbeddedPostgres(REPO / ".data" / "soak-postgres", database="postgres")
    log(f"starting the soak PostgreSQL cluster under {cluster.root}")
    admin_url = await asyncio.to_thread(cluster.start)
    database = f"userapi_soak_{time.strftime('%Y%m%d%H%M%S')}_{secrets.token_hex(2)}"
    admin = await asyncpg.connect(admin_url)
    server: subprocess.Popen[bytes] | None = None
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
        soak_url = with_database(admin_url, database)
        env = service_env(soak_url, opts, run_dir)
        migrated = await asyncio.to_thread(
            subprocess.run, userapi("migrate"), env=env, cwd=run_dir, capture_output=True, text=True
        )
        if migrated.returncode != 0:
            raise SoakError(f"userapi migrate failed: {migrated.stderr or migrated.stdout}")

        port, log_path = free_port(), run_dir / "serve.log"
        argv = userapi("serve", "--host", HOST, "--port", str(port), "--workers", str(opts.workers))
        log(f"serving with {opts.workers} worker(s) on port {port} (log: {log_path})")
        server = launch(argv, env, run_dir, log_path)
        base = f"http://{HOST}:{port}"
        await wait_ready(base, server, log_path)
        pids = await asyncio.to_thread(worker_pids, server, opts.workers)

        stats = Stats()
        limits = httpx.Limits(
            max_connections=opts.concurrency * 2, max_keepalive_connections=opts.concurrency * 2
        )
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as http:
            load = Load(http, stats)
            log(f"seeding an admin and {opts.concurrency} users (bcrypt cost {opts.bcrypt_rounds})")
            await seed(load, soak_url, opts.concurrency)
            stats.statuses.clear()
            stats.latencies.clear()

            log(f"mixed load for {opts.seconds:.0f}s at concurrency {opts.concurrency}")
            samples: list[Sample] = []
            t0 = time.monotonic()
            every = min(5.0, max(1.0, opts.seconds / 60))
            watcher = asyncio.create_task(sampler(admin, database, pids, t0, every, samples))
            clients = [asyncio.create_task(load.client(i)) for i in range(opts.concurrency)]
            await asyncio.sleep(opts.seconds)
            load.running = False
            await asyncio.gather(*clients)
            elapsed = time.monotonic() - t0
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            # The end sample is taken while the pools still hold what the load needed.
            samples.append(await sample(admin, database, pids, t0))

        server.send_signal(signal.SIGTERM)
        try:
            exit_code = await asyncio.to_thread(server.wait, 40)
        except subprocess.TimeoutExpired:
            exit_code = None

        from userapi.core.config import Settings

        # Per worker: the ORM pool and the read pool (the soak keeps the defaults).
        fields = Settings.model_fields
        pool_size = int(fields["db_pool_size"].default) + int(fields["db_read_pool_size"].default)
        resources, checks = resource_checks(samples, WARMUP_SHARE * opts.seconds, opts.workers * pool_size)
        unexpected = sum(
            n for op, counts in stats.statuses.items() for s, n in counts.items() if s != str(EXPECTED[op])
        )
        missing = [op for op in MIX if not stats.latencies.get(op)]
        checks = [
            Check(
                "unexpected statuses",
                unexpected == 0,
                f"{unexpected} of {sum(map(len, stats.latencies.values()))}",
            ),
            Check("every endpoint exercised", not missing, f"missing: {missing}" if missing else "all five"),
            *checks,
            Check("clean shutdown (SIGTERM)", exit_code == 0, f"exit status {exit_code}"),
        ]
        print(
            f"\n## userapi soak: {elapsed:.0f}s, {opts.workers} worker(s), concurrency {opts.concurrency}, "
            f"bcrypt cost {opts.bcrypt_rounds}\n\n{endpoint_table(stats, elapsed)}\n\n{resources}\n\n"
            "| check | result | detail |\n|---|---|---|\n"
            + "\n".join(f"| {c.name} | {'PASS' if c.passed else 'FAIL'} | {c.detail} |" for c in checks)
        )
        if stats.unexpected:
            print("\nfirst unexpected responses:\n" + "\n".join(f"- {u}" for u in stats.unexpected))
        return 0 if all(c.passed for c in checks) else 1
    finally:
        if server is not None and server.poll() is None:
            server.kill()
            server.wait()
        if not opts.keep:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()
        if not opts.keep:
            await asyncio.to_thread(cluster.stop)


def main(argv: list[str] | None = None) -> int:
    opts = parse_options(sys.argv[1:] if argv is None else argv)
    try:
        return asyncio.run(soak(opts))
    except SoakError as exc:
        log(f"error: {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
