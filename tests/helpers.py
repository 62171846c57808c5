"""Test helpers: settings for tests, HTTP shortcuts, and a real `userapi serve` process."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from userapi.core.config import Settings

TEST_SECRET = "test-secret-" + "x" * 40
PASSWORD = "correct horse battery staple"
API = "/api/v1"


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": database_url,
        "jwt_secret": TEST_SECRET,
        "bcrypt_rounds": 4,
        # High by default so ordinary tests never trip them; throttling tests lower them.
        "rate_limit_login_account": "1000/minute",
        "rate_limit_login_ip": "1000/minute",
        "rate_limit_register_ip": "1000/minute",
        "db_pool_size": 10,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def unique_email(tag: str = "user") -> str:
    return f"{tag}-{uuid.uuid4().hex[:12]}@example.com"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def register(
    client: httpx.AsyncClient, email: str | None = None, password: str = PASSWORD, **extra: Any
) -> dict[str, Any]:
    response = await client.post(
        f"{API}/auth/register", json={"email": email or unique_email(), "password": password, **extra}
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> dict[str, Any]:
    response = await client.post(f"{API}/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return dict(response.json())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TEST_DATABASE_URL")}
    env.update(
        {
            "ENVIRONMENT": "test",
            "DATABASE_URL": database_url,
            "JWT_SECRET": TEST_SECRET,
            "BCRYPT_ROUNDS": "4",
            "LOG_LEVEL": "WARNING",
            "ACCESS_LOG": "false",
        }
    )
    env.update(extra)
    return env


def run_cli(
    *args: str, env: dict[str, str], input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "userapi", *args],
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextmanager
def running_server(env: dict[str, str], *args: str, port: int | None = None) -> Iterator[str]:
    """Start `userapi serve` as a real process; yields its base URL, stops it (SIGTERM) after.

    Its output goes to a file, not a pipe: an unread pipe fills up and blocks the server.
    """
    port = port or free_port()
    log = tempfile.NamedTemporaryFile("w+", prefix="userapi-serve-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "userapi", "serve", "--port", str(port), *args],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise AssertionError(f"server exited with {process.returncode}: {_tail(log.name)}")
            try:
                if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"server not ready in 60 s: {_tail(log.name)}")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        os.unlink(log.name)


def _tail(path: str, lines: int = 30) -> str:
    with open(path) as f:
        return "".join(f.readlines()[-lines:])


def random_name(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"


def assert_problem(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is an RFC 9457 problem document with this status (and stable code)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = dict(response.json())
    assert {"type", "title", "status", "detail", "code"} <= body.keys()
    assert body["status"] == status
    assert body["type"] == f"https://userapi.dev/problems/{body['code']}"
    if code is not None:
        assert body["code"] == code
    assert isinstance(body["title"], str)
    assert isinstance(body["detail"], str)
    assert body["title"]
    assert body["detail"]
    assert "Traceback" not in response.text
    return body
