"""A private redis-server for tests: found on PATH (installed with apt-get as root), on a free port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers import free_port

HOST = "127.0.0.1"
READY_TIMEOUT = 15
_INSTALL = [["apt-get", "update"], ["apt-get", "install", "-y", "redis-server"]]


def ensure_redis_server() -> str:
    """The redis-server binary; installed with apt-get when missing and running as root, else a failure."""
    if found := shutil.which("redis-server"):
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log = Path(tempfile.gettempdir()) / "userapi-redis-install.log"
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        with log.open("w") as out:
            for cmd in _INSTALL:
                proc = subprocess.run(
                    cmd, check=False, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env
                )
                if proc.returncode != 0:
                    pytest.fail(f"`{' '.join(cmd)}` failed (see {log}); install redis-server by hand")
        if found := shutil.which("redis-server"):
            return found
    pytest.fail(
        "redis-server not found on PATH: install it (Debian: apt-get install -y redis-server); "
        "the shared rate-limit tests need a real Redis",
        pytrace=False,
    )


def ping(port: int, timeout: float = 1.0) -> bool:
    """True when a Redis server answers PING on the port (raw RESP, no client library involved)."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def redis_server() -> Iterator[str]:
    """Run a throwaway redis-server (no persistence) in a temp dir; yields its redis:// URL."""
    binary = ensure_redis_server()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="userapi-redis-") as workdir:
        process = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                HOST,
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                workdir,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.monotonic() + READY_TIMEOUT
            while not ping(port):
                if process.poll() is not None:
                    output = process.stdout.read() if process.stdout else ""
                    pytest.fail(f"redis-server exited with {process.returncode}: {output[-2000:]}")
                if time.monotonic() > deadline:
                    pytest.fail(f"redis-server did not answer PING within {READY_TIMEOUT} s")
                time.sleep(0.05)
            yield f"redis://{HOST}:{port}/0"
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout:
                process.stdout.close()
