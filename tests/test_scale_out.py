"""Stateless processes: two `userapi serve` on one PostgreSQL and one Redis behave as one service;
and the service works through PgBouncer in transaction mode."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures.helpers import API, PASSWORD, running_server, server_env, unique_email
from tests.fixtures.pgbouncer import pgbouncer
from tests.fixtures.redis_server import redis_server

# Generous: these run while the machine is busy with the rest of the suite.
HTTP = httpx.Client(timeout=30)


@pytest.fixture(scope="module")
def two_servers(database_url: str) -> Iterator[tuple[str, str]]:
    with redis_server() as redis_url:
        env = server_env(
            database_url,
            RATE_LIMIT_STORAGE_URL=redis_url,
            RATE_LIMIT_LOGIN_ACCOUNT="3/minute",
            RATE_LIMIT_LOGIN_IP="1000/minute",
            RATE_LIMIT_REGISTER_IP="1000/minute",
        )
        with running_server(env) as a, running_server(env) as b:
            yield a, b


def _signed_in(base: str, email: str | None = None) -> tuple[str, dict[str, str]]:
    email = email or unique_email("scale")
    assert (
        HTTP.post(f"{base}{API}/auth/register", json={"email": email, "password": PASSWORD}).status_code
        == 201
    )
    tokens = HTTP.post(f"{base}{API}/auth/login", json={"email": email, "password": PASSWORD}).json()
    return email, tokens


def _me(base: str, access: str) -> int:
    return HTTP.get(f"{base}{API}/users/me", headers={"Authorization": f"Bearer {access}"}).status_code


def test_a_token_from_one_process_works_on_the_other(two_servers: tuple[str, str]) -> None:
    a, b = two_servers
    _, tokens = _signed_in(a)
    assert _me(b, tokens["access_token"]) == 200
    refreshed = HTTP.post(f"{b}{API}/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200
    assert _me(a, refreshed.json()["access_token"]) == 200


def test_logout_on_one_ends_the_session_on_the_other(two_servers: tuple[str, str]) -> None:
    a, b = two_servers
    _, tokens = _signed_in(a)
    assert (
        HTTP.post(f"{a}{API}/auth/logout", json={"refresh_token": tokens["refresh_token"]}).status_code == 204
    )
    assert _me(b, tokens["access_token"]) == 401
    again = HTTP.post(f"{b}{API}/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert again.status_code == 401


def test_password_change_on_one_ends_sessions_on_the_other(two_servers: tuple[str, str]) -> None:
    a, b = two_servers
    _, tokens = _signed_in(a)
    changed = HTTP.post(
        f"{a}{API}/users/me/password",
        json={"current_password": PASSWORD, "new_password": "another long passphrase"},
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )
    assert changed.status_code == 204
    assert _me(b, tokens["access_token"]) == 401


def test_role_change_and_deactivation_take_effect_on_the_other(
    two_servers: tuple[str, str], database_url: str
) -> None:
    from tests.fixtures.helpers import run_cli

    a, b = two_servers
    admin_email, admin_tokens = _signed_in(a)
    promoted = run_cli("create-admin", "--email", admin_email, env=server_env(database_url))
    assert promoted.returncode == 0, promoted.stderr
    admin = {"Authorization": f"Bearer {admin_tokens['access_token']}"}
    # The promotion is read from the database on the next request, on either process.
    assert HTTP.get(f"{b}{API}/users", headers=admin).status_code == 200
    _, user_tokens = _signed_in(a)
    user_id = HTTP.get(
        f"{a}{API}/users/me", headers={"Authorization": f"Bearer {user_tokens['access_token']}"}
    ).json()["id"]
    user = {"Authorization": f"Bearer {user_tokens['access_token']}"}
    assert HTTP.get(f"{b}{API}/users", headers=user).status_code == 403
    assert HTTP.patch(f"{a}{API}/users/{user_id}", json={"role": "admin"}, headers=admin).status_code == 200
    assert HTTP.get(f"{b}{API}/users", headers=user).status_code == 200
    assert HTTP.patch(f"{a}{API}/users/{user_id}", json={"role": "user"}, headers=admin).status_code == 200
    assert HTTP.get(f"{b}{API}/users", headers=user).status_code == 403
    assert (
        HTTP.patch(f"{b}{API}/users/{user_id}", json={"is_active": False}, headers=admin).status_code == 200
    )
    assert _me(a, user_tokens["access_token"]) == 401


def test_throttling_counts_across_both(two_servers: tuple[str, str]) -> None:
    a, b = two_servers
    email = unique_email("throttle")
    assert (
        HTTP.post(f"{a}{API}/auth/register", json={"email": email, "password": PASSWORD}).status_code == 201
    )
    statuses = [
        HTTP.post(f"{base}{API}/auth/login", json={"email": email, "password": "wrong password!"}).status_code
        for base in (a, b, a)
    ]
    assert statuses == [401, 401, 401]
    fourth = HTTP.post(f"{b}{API}/auth/login", json={"email": email, "password": "wrong password!"})
    assert fourth.status_code == 429
    assert int(fourth.headers["retry-after"]) >= 1


def test_through_pgbouncer_in_transaction_mode(database_url: str) -> None:
    with pgbouncer(database_url) as pooled_url:
        env = server_env(pooled_url, DB_STATEMENT_CACHE_SIZE="0", DB_POOL_SIZE="4")
        with running_server(env) as base, httpx.Client(base_url=base) as http:
            for _ in range(3):  # several rounds, so transactions land on different server connections
                email = unique_email("bouncer")
                assert (
                    http.post(f"{API}/auth/register", json={"email": email, "password": PASSWORD}).status_code
                    == 201
                )
                tokens = http.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD}).json()
                headers = {"Authorization": f"Bearer {tokens['access_token']}"}
                for _ in range(5):
                    assert http.get(f"{API}/users/me", headers=headers).status_code == 200
                refreshed = http.post(f"{API}/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
                assert refreshed.status_code == 200
                assert http.get(f"{API}/auth/sessions", headers=headers).status_code == 200
