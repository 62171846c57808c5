"""Time from request to delivery: POST /auth/password/forgot against `userapi serve` (production
settings) until the message is in a real SMTP server's hands (aiosmtpd on 127.0.0.1).

    .venv/bin/python -m bench.mail_latency [--requests 50] [--burst 50] [--sample]

Prints each figure as it is measured and, with --sample, one received reset mail (headers and
text, token elided). BENCH_DATABASE_URL as for `make bench`; else the bench's embedded cluster.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import re
import secrets
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from bench._common import PASSWORD, BenchError, expect, free_port, log
from bench._db import BenchPostgres, migrate
from bench._procs import Server, service_env

DATABASE = "userapi_bench_mail"
TOKEN = re.compile(r"token=[A-Za-z0-9_-]+")


class Inbox:
    """An aiosmtpd handler noting when each message arrived (perf_counter, this process's clock)."""

    def __init__(self) -> None:
        self.arrived: list[tuple[float, bytes]] = []
        self.changed = threading.Condition()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self.changed:
            self.arrived.append((time.perf_counter(), bytes(envelope.original_content or envelope.content)))
            self.changed.notify_all()
        return "250 OK"

    def wait(self, count: int, timeout: float = 60) -> None:
        deadline = time.perf_counter() + timeout
        with self.changed:
            while len(self.arrived) < count:
                if not self.changed.wait(max(0.0, deadline - time.perf_counter())):
                    raise BenchError(f"{len(self.arrived)} of {count} messages arrived in {timeout:.0f} s")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(name: str, values: list[float]) -> None:
    print(
        f"{name:<34} n={len(values):<4} median {statistics.median(values):7.1f} ms   "
        f"p95 {percentile(values, 95):7.1f} ms   max {max(values):7.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=50, help="sequential requests, one at a time")
    parser.add_argument("--burst", type=int, default=50, help="requests sent at once (16 in flight)")
    parser.add_argument("--sample", action="store_true", help="print one received reset mail")
    args = parser.parse_args()

    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=free_port(), server_hostname="localhost")
    smtp.start()
    postgres = BenchPostgres()
    postgres.start()
    run_dir = Path(tempfile.mkdtemp(prefix="userapi-bench-mail-"))
    server = None
    try:
        url = postgres.create(DATABASE)
        env = service_env(
            url,
            secrets.token_urlsafe(48),
            {
                "SMTP_URL": f"smtp://127.0.0.1:{smtp.port}",
                "MAIL_FROM": "Acme Accounts <accounts@acme.example.com>",
                "PRODUCT_NAME": "Acme",
                "PUBLIC_URL": "https://id.acme.example.com",
                "RATE_LIMIT_MAIL_ADDRESS": "1000000/minute",
                "RATE_LIMIT_MAIL_IP": "1000000/minute",
                "ACCESS_LOG": "false",
            },
        )
        migrate(env, run_dir)
        server = Server.service(1, env, run_dir)
        server.start()
        log(f"userapi serve ready in {server.wait_ready():.1f} s; SMTP on 127.0.0.1:{smtp.port}")
        address = "ada@example.com"
        expect(
            server.port, "POST", "/api/v1/auth/register", 201, body={"email": address, "password": PASSWORD}
        )
        inbox.wait(1)  # the sign-up's verification mail
        print(f"userapi serve (1 worker, ENVIRONMENT=production) -> aiosmtpd, PostgreSQL: {postgres.source}")

        answered, delivered = [], []
        for _ in range(args.requests):
            before = len(inbox.arrived)
            started = time.perf_counter()
            expect(server.port, "POST", "/api/v1/auth/password/forgot", 202, body={"email": address})
            answered.append((time.perf_counter() - started) * 1000)
            inbox.wait(before + 1)
            delivered.append((inbox.arrived[before][0] - started) * 1000)
        summary("request -> 202 answered", answered)
        summary("request -> message at SMTP server", delivered)

        if args.burst:
            before = len(inbox.arrived)
            started = time.perf_counter()
            with ThreadPoolExecutor(16) as pool:
                list(
                    pool.map(
                        lambda _: expect(
                            server.port, "POST", "/api/v1/auth/password/forgot", 202, body={"email": address}
                        ),
                        range(args.burst),
                    )
                )
            all_answered = time.perf_counter()
            inbox.wait(before + args.burst)
            last = inbox.arrived[before + args.burst - 1][0]
            print(
                f"burst of {args.burst} requests (16 in flight): all answered in "
                f"{(all_answered - started) * 1000:.0f} ms, all delivered in {(last - started) * 1000:.0f} ms"
            )

        if args.sample:
            raw = inbox.arrived[-1][1]
            message = email.message_from_bytes(raw, policy=email.policy.default)
            print("\n--- one received reset mail (token elided) ---")
            for name in (
                "From",
                "To",
                "Subject",
                "Date",
                "Message-ID",
                "Auto-Submitted",
                "MIME-Version",
                "Content-Type",
            ):
                print(f"{name}: {TOKEN.sub('token=<elided>', str(message[name]))}")
            body = message.get_body(("plain",))
            assert body is not None
            print()
            print(TOKEN.sub("token=<elided>", body.get_content()).rstrip())  # type: ignore[attr-defined]
    finally:
        if server is not None:
            server.stop()
        smtp.stop()
        postgres.drop(DATABASE)
        postgres.stop()


if __name__ == "__main__":
    main()
