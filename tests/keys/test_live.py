"""Real `userapi serve` processes: independent verifiers from the JWKS URL, rotation under traffic, retire
seen by a second process, the keys CLI, and a wrong KEY_ENCRYPTION_SECRET at start-up.

One pair of servers on one database serves the whole module (each process start costs seconds on a
busy machine); each test works from whatever key set the previous one left."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet

from tests.fixtures.database import scratch_database
from tests.fixtures.helpers import API, PASSWORD, running_server, server_env
from tests.fixtures.helpers import run_cli as _run_cli
from userapi.core.config import to_async_url
from userapi.db import migrate

JWKS = "/.well-known/jwks.json"
# Short delays so a rotation completes within the test; the relations between them are the real ones.
FAST_KEYS = {
    "KEYS_PUBLISH_DELAY_SECONDS": "3",
    "KEYS_REFRESH_SECONDS": "1",
    "RATE_LIMIT_LOGIN_ACCOUNT": "100000/minute",
    "RATE_LIMIT_LOGIN_IP": "100000/minute",
}


def run_cli(*args: str, env: dict[str, str]) -> str:
    result = _run_cli(*args, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def sign_in(base: str, email: str) -> str:
    response = httpx.post(f"{base}{API}/auth/login", json={"email": email, "password": PASSWORD}, timeout=30)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def me(base: str, token: str) -> httpx.Response:
    return httpx.get(f"{base}{API}/users/me", headers={"Authorization": f"Bearer {token}"}, timeout=30)


def verify_independently(base: str, token: str) -> dict[str, Any]:
    """Two JOSE libraries, given only the JWKS URL, verify the token; both must agree on its claims."""
    signing_key = jwt.PyJWKClient(base + JWKS, cache_keys=False).get_signing_key_from_jwt(token)
    pyjwt_claims = jwt.decode(
        token,
        signing_key.key,
        algorithms=[signing_key.algorithm_name],  # from the key, never from the token
        audience="userapi",
        issuer="userapi",
        options={"require": ["exp", "iss", "aud", "sub"]},
    )
    keys = KeySet.import_key_set(httpx.get(base + JWKS, timeout=30).json())
    header = jwt.get_unverified_header(token)
    jose_key = keys.get_by_kid(header["kid"])
    decoded = jose_jwt.decode(token, jose_key, algorithms=[jose_key.get("alg")])
    jose_jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": "userapi"},
        aud={"essential": True, "value": "userapi"},
        exp={"essential": True},
    ).validate(decoded.claims)
    assert decoded.claims == pyjwt_claims
    return dict(pyjwt_claims)


@dataclass(frozen=True)
class Live:
    env: dict[str, str]
    a: str  # base URLs of the two processes
    b: str
    email: str
    user_id: str


@pytest.fixture(scope="module")
async def live_database_url(server_url: str) -> AsyncIterator[str]:
    """A migrated database with no signing key yet (`migrate` creating one: tests/cli)."""
    async with scratch_database(server_url, "userapi_keys_live") as url:
        # Alembic's env.py calls asyncio.run: keep it out of the test's event loop.
        await asyncio.to_thread(migrate.upgrade, to_async_url(url))
        yield url


@pytest.fixture(scope="module")
def live(live_database_url: str) -> Iterator[Live]:
    """Two `serve` processes on a database with no key: the first creates it (as `migrate` does,
    under the keys advisory lock), the second finds it."""
    env = server_env(live_database_url, **FAST_KEYS)
    # One after the other: started together on a busy 2-core machine, each took over 60 s to listen.
    with running_server(env) as a, running_server(env) as b:
        email = f"live-{uuid.uuid4().hex[:10]}@example.com"
        created = httpx.post(
            f"{a}{API}/auth/register", json={"email": email, "password": PASSWORD}, timeout=30
        )
        assert created.status_code == 201, created.text
        published = httpx.get(a + JWKS, timeout=30).json()["keys"]
        assert len(published) == 1, published
        assert published[0]["alg"] == "RS256"
        assert httpx.get(b + JWKS, timeout=30).json()["keys"] == published
        yield Live(env, a, b, email, created.json()["id"])


def published_kids(base: str) -> set[str]:
    return {k["kid"] for k in httpx.get(base + JWKS, timeout=30).json()["keys"]}


def test_tokens_verify_from_the_jwks_url_alone(live: Live) -> None:
    """PyJWT and joserfc, given only the other process's JWKS URL, verify a real token."""
    token = sign_in(live.a, live.email)
    assert verify_independently(live.b, token)["sub"] == live.user_id
    published = published_kids(live.a)
    assert published == published_kids(live.b)
    assert jwt.get_unverified_header(token)["kid"] in published


def test_rotation_under_traffic_fails_no_request(live: Live) -> None:
    """Sign in on one process and call /users/me on the other in a loop while `keys rotate` runs."""
    first = sign_in(live.a, live.email)
    old_kid = jwt.get_unverified_header(first)["kid"]
    old_algorithm = jwt.get_unverified_header(first)["alg"]
    statuses: Counter[str] = Counter()
    kids: set[str] = set()
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            for signer, reader in ((live.a, live.b), (live.b, live.a)):
                try:
                    token = sign_in(signer, live.email)
                    kids.add(jwt.get_unverified_header(token)["kid"])
                    statuses[str(me(reader, token).status_code)] += 1
                except (AssertionError, httpx.HTTPError) as exc:
                    statuses[type(exc).__name__] += 1

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        out = run_cli("keys", "rotate", "--algorithm", "EdDSA", env=live.env)
        new_kid = out.split()[1]
        assert new_kid != old_kid
        # Published before it signs: both processes serve it within the refresh interval (1 s here;
        # the reload runs in the background after the first request past it, so allow one more).
        deadline = time.monotonic() + 3
        while not all(new_kid in published_kids(base) for base in (live.a, live.b)):
            assert time.monotonic() < deadline, "new key not published by both processes within 3 s"
            time.sleep(0.1)
        time.sleep(3.5)  # past the activation (publish delay 3 s) and one refresh
        listed = run_cli("keys", "list", env=live.env)
        assert f"{new_kid}  EdDSA      active" in listed, listed
        assert f"{old_kid}  {old_algorithm:<9}  previous" in listed, listed
    finally:
        stop.set()
        worker.join(timeout=60)
    assert set(statuses) == {"200"}, statuses
    assert statuses["200"] >= 10, statuses
    assert {old_kid, new_kid} <= kids, "the traffic saw both keys sign"

    # New tokens are EdDSA, from either process, and verify independently.
    for base in (live.a, live.b):
        token = sign_in(base, live.email)
        assert jwt.get_unverified_header(token) == {"alg": "EdDSA", "kid": new_kid, "typ": "JWT"}
        verify_independently(base, token)
    # The old key's tokens still verify until they expire (previous, still published).
    assert me(live.b, first).status_code == 200


def test_retire_is_refused_by_the_other_process_at_once(live: Live) -> None:
    """Emergency: `keys retire` the signing key; the next request to either process is a 401."""
    leaked = sign_in(live.a, live.email)
    kid = jwt.get_unverified_header(leaked)["kid"]
    assert me(live.b, leaked).status_code == 200
    assert f"retired {kid}" in run_cli("keys", "retire", kid, env=live.env)
    refused = me(live.b, leaked)  # the very next request: the per-request statement checks the kid
    assert refused.status_code == 401, refused.text
    assert me(live.a, leaked).status_code == 401
    # b reloaded when it saw the retired kid: no longer published either.
    assert kid not in published_kids(live.b)
    # Both processes sign with the replacement now (each reloaded when it saw the retired kid).
    for base, other in ((live.a, live.b), (live.b, live.a)):
        replacement = sign_in(base, live.email)
        assert jwt.get_unverified_header(replacement)["kid"] != kid
        assert me(other, replacement).status_code == 200


def test_a_retired_key_signs_nothing_more_even_before_a_reload(live: Live) -> None:
    """Right after `keys retire`, before any request has shown either process the retired kid
    (and within their reload interval), a sign-in gets a token of another key that works."""
    kid = jwt.get_unverified_header(sign_in(live.a, live.email))["kid"]
    assert f"retired {kid}" in run_cli("keys", "retire", kid, env=live.env)
    for base in (live.a, live.b):
        fresh = sign_in(base, live.email)
        assert jwt.get_unverified_header(fresh)["kid"] != kid
        assert me(base, fresh).status_code == 200


def test_wrong_key_encryption_secret_is_one_line_at_start(live: Live) -> None:
    """`serve` opens every stored key before listening (`migrate` runs the same check)."""
    wrong = {**live.env, "KEY_ENCRYPTION_SECRET": "a-different-secret-" + "w" * 30}
    result = _run_cli("serve", env=wrong, timeout=60)
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "KEY_ENCRYPTION_SECRET" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    # A kid may start with "-" (base64url): still the argument, not an option.
    unknown = _run_cli("keys", "retire", "-no-such-kid", env=live.env)
    assert unknown.returncode == 1
    assert unknown.stderr.strip().splitlines() == ["error: key_not_found: No signing key '-no-such-kid'"]
