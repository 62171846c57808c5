"""A private PgBouncer (transaction pooling) in front of the test PostgreSQL, for the scale-out tests."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.helpers import free_port


def ensure_pgbouncer() -> str:
    for candidate in (shutil.which("pgbouncer"), "/usr/sbin/pgbouncer"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "pgbouncer"]):
            done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            if done.returncode != 0:
                pytest.fail(f"`{' '.join(cmd)}` failed: {done.stderr.strip()[-300:]}")
        return ensure_pgbouncer()
    pytest.fail("pgbouncer not found: install it (Debian: apt-get install -y pgbouncer)", pytrace=False)


@contextmanager
def pgbouncer(database_url: str) -> Iterator[str]:
    """Yields a postgresql:// URL that goes through a transaction-mode PgBouncer to `database_url`."""
    binary = ensure_pgbouncer()
    target = make_url(database_url)
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="userapi-pgbouncer-"))
    run_as: dict[str, int] = {}
    if os.geteuid() == 0:  # pgbouncer refuses to run as root
        account = pwd.getpwnam("postgres") if _has_user("postgres") else pwd.getpwnam("nobody")
        run_as = {"user": account.pw_uid, "group": account.pw_gid}
        os.chown(workdir, account.pw_uid, account.pw_gid)
    (workdir / "userlist.txt").write_text(f'"{target.username}" "{target.password}"\n')
    (workdir / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={target.host} port={target.port}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        "auth_type = scram-sha-256\nauth_file = userlist.txt\n"
        "pool_mode = transaction\ndefault_pool_size = 10\nmax_client_conn = 500\n"
        "ignore_startup_parameters = extra_float_digits\n"
        f"logfile = {workdir / 'pgbouncer.log'}\npidfile = {workdir / 'pgbouncer.pid'}\n"
    )
    for path in workdir.iterdir():
        if run_as:
            os.chown(path, run_as["user"], run_as["group"])
    process = subprocess.Popen(
        [binary, str(workdir / "pgbouncer.ini")],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        **run_as,  # type: ignore[arg-type]
    )
    try:
        deadline = time.monotonic() + 15
        while not _accepts(port):
            if process.poll() is not None or time.monotonic() > deadline:
                log = (workdir / "pgbouncer.log").read_text() if (workdir / "pgbouncer.log").exists() else ""
                pytest.fail(f"pgbouncer did not start: {log[-500:]}")
            time.sleep(0.05)
        yield target.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
