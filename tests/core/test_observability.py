"""Request ids, Prometheus metrics (also across worker processes) and access logs without secrets."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator

import httpx
import pytest
import structlog
from pydantic import SecretStr

from tests.fixtures.app import Account
from tests.fixtures.helpers import API, PASSWORD, metric_sample, running_server, server_env, unique_email
from userapi.core.config import Environment, Settings
from userapi.core.logging import configure_logging


async def test_request_id_is_echoed_or_made(client: httpx.AsyncClient) -> None:
    given = await client.get("/health/live", headers={"X-Request-ID": "req-42.a:b"})
    assert given.headers["x-request-id"] == "req-42.a:b"
    made = await client.get("/health/live")
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    # Header injection or junk is not echoed: a fresh id replaces it.
    hostile = await client.get("/health/live", headers={"X-Request-ID": "a b<script>"})
    assert hostile.headers["x-request-id"] != "a b<script>"
    assert re.fullmatch(r"[0-9a-f]{32}", hostile.headers["x-request-id"])
    not_found = await client.get("/nowhere", headers={"X-Request-ID": "on-errors-too"})
    assert not_found.headers["x-request-id"] == "on-errors-too"


async def test_metrics_count_requests_by_route_template(client: httpx.AsyncClient, admin: Account) -> None:
    before = (await client.get("/metrics")).text
    route = "/api/v1/users/{user_id}"
    for _ in range(3):
        await client.get(f"{API}/users/{admin['id']}", headers=admin.headers)
    await client.post(f"{API}/auth/login", json={"email": admin["email"], "password": "wrong password"})
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    after = response.text
    labels = {"method": "GET", "route": route, "status": "200"}
    assert (
        metric_sample(after, "userapi_http_requests_total", **labels)
        - metric_sample(before, "userapi_http_requests_total", **labels)
        == 3
    )
    assert metric_sample(after, "userapi_logins_total", outcome="failure") >= 1
    for family in (
        "userapi_http_request_duration_seconds_bucket",
        "userapi_refresh_token_reuse_detected_total",
        "userapi_throttled_requests_total",
        "userapi_db_pool_connections_in_use",
    ):
        assert f"# TYPE {family.removesuffix('_bucket')}" in after


async def test_metrics_token_is_enforced_when_set(settings: Settings, engine: object) -> None:
    from tests.fixtures.app import build_test_app

    app = build_test_app(settings.model_copy(update={"metrics_token": SecretStr("scrape-me")}), engine, None)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        assert (await client.get("/metrics")).status_code == 401
        assert (await client.get("/metrics", headers={"Authorization": "Bearer nope"})).status_code == 401
        ok = await client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert ok.status_code == 200


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
async def test_access_log_is_json_and_carries_no_secret(
    client: httpx.AsyncClient, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(settings.model_copy(update={"environment": Environment.production}))
    email = unique_email()
    await client.post(f"{API}/auth/register", json={"email": email, "password": PASSWORD})
    tokens = (await client.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD})).json()
    await client.get(f"{API}/users/me?x=1", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    await client.post(f"{API}/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    output = capsys.readouterr().err
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("event") == "request"]
    assert len(access) == 4
    me = next(line for line in access if line["path"] == f"{API}/users/me")
    assert me["route"] == f"{API}/users/me"
    assert me["status"] == 200
    assert me["request_id"]
    assert isinstance(me["duration_ms"], float)
    for secret in (PASSWORD, tokens["access_token"], tokens["refresh_token"], "$2b$"):
        assert secret not in output


def test_metrics_aggregate_across_two_workers(database_url: str) -> None:
    with running_server(server_env(database_url), "--workers", "2") as base:
        for _ in range(40):  # a new connection each time, spread over both workers
            assert httpx.get(f"{base}/health/live", timeout=30).status_code == 200
        text = httpx.get(f"{base}/metrics", timeout=30).text
    labels = {"method": "GET", "route": "/health/live", "status": "200"}
    assert metric_sample(text, "userapi_http_requests_total", **labels) == 40
    # Samples from two processes (pid label present only in multiprocess files' gauges).
    assert "userapi_db_pool_connections_in_use" in text


async def test_metric_children_are_looked_up_once_per_label_set(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The middleware keeps each label set's children (issue 17); the samples are the same children's."""
    from userapi.core import middleware

    looked_up: list[tuple[str, ...]] = []
    real = middleware.HTTP_REQUESTS

    class Counting:
        def labels(self, *values: str) -> object:
            looked_up.append(values)
            return real.labels(*values)

    monkeypatch.setattr(middleware, "HTTP_REQUESTS", Counting())
    before = metric_sample(
        (await client.get("/metrics")).text,
        "userapi_http_requests_total",
        method="GET",
        route="/health/live",
        status="200",
    )
    for _ in range(3):
        assert (await client.get("/health/live")).status_code == 200
    after = metric_sample(
        (await client.get("/metrics")).text,
        "userapi_http_requests_total",
        method="GET",
        route="/health/live",
        status="200",
    )

    assert looked_up.count(("GET", "/health/live", "200")) == 1
    assert after - before == 3


@pytest.mark.parametrize(
    ("path", "route", "status"),
    [
        ("/static/web/console.css", "/static/web/{path}", "200"),
        ("/docs/assets/swagger-init.js", "/docs/assets/{path}", "200"),
        ("/static/web/no-such-file.css", "/static/web/{path}", "404"),
        ("/no/such/route", "unmatched", "404"),
    ],
)
async def test_files_under_a_mount_are_counted_under_its_template(
    client: httpx.AsyncClient, path: str, route: str, status: str
) -> None:
    async def count() -> float:
        metrics = (await client.get("/metrics")).text
        return metric_sample(metrics, "userapi_http_requests_total", method="GET", route=route, status=status)

    before = await count()
    assert (await client.get(path)).status_code == int(status)
    assert await count() == before + 1
