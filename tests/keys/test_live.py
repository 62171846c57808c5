"""Real `userapi serve` processes: independent verifiers from the JWKS URL, rotation under traffic, retire
seen by a second process, the keys CLI, and a wrong KEY_ENCRYPTION_SECRET at start-up."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from typing import Any

import httpx
import jwt
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet

from tests.fixtures.helpers import API, PASSWORD, running_server, server_env
from tests.fixtures.helpers import run_cli as _run_cli

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


def test_rotation_under_traffic_and_retire_seen_by_another_process(empty_database_url: str) -> None:
    env = server_env(empty_database_url, **FAST_KEYS)
    assert "signing key" in run_cli("migrate", env=env)  # the first key (RS256)
    with running_server(env) as a, running_server(env) as b:
        email = f"live-{uuid.uuid4().hex[:10]}@example.com"
        created = httpx.post(
            f"{a}{API}/auth/register", json={"email": email, "password": PASSWORD}, timeout=30
        )
        assert created.status_code == 201, created.text
        first = sign_in(a, email)
        assert verify_independently(b, first)["sub"] == created.json()["id"]
        old_kid = jwt.get_unverified_header(first)["kid"]

        # Traffic: sign in on one process, call /users/me on the other, in a loop.
        statuses: Counter[str] = Counter()
        kids: set[str] = set()
        stop = threading.Event()

        def traffic() -> None:
            while not stop.is_set():
                for signer, reader in ((a, b), (b, a)):
                    try:
                        token = sign_in(signer, email)
                        kids.add(jwt.get_unverified_header(token)["kid"])
                        statuses[str(me(reader, token).status_code)] += 1
                    except (AssertionError, httpx.HTTPError) as exc:
                        statuses[type(exc).__name__] += 1

        worker = threading.Thread(target=traffic)
        worker.start()
        try:
            out = run_cli("keys", "rotate", "--algorithm", "EdDSA", env=env)
            new_kid = out.split()[1]
            assert new_kid != old_kid
            # Published before it signs: both processes serve it within the refresh interval.
            time.sleep(1.5)
            for base in (a, b):
                assert new_kid in {k["kid"] for k in httpx.get(base + JWKS, timeout=30).json()["keys"]}
            time.sleep(3)  # past the activation
            listed = run_cli("keys", "list", env=env)
            assert f"{new_kid}  EdDSA      active" in listed, listed
            assert f"{old_kid}  RS256      previous" in listed, listed
            time.sleep(1)
        finally:
            stop.set()
            worker.join(timeout=60)
        assert set(statuses) == {"200"}, statuses
        assert statuses["200"] >= 10, statuses
        assert {old_kid, new_kid} <= kids, "the traffic saw both keys sign"

        # New tokens are EdDSA, from either process, and verify independently.
        for base in (a, b):
            token = sign_in(base, email)
            assert jwt.get_unverified_header(token) == {"alg": "EdDSA", "kid": new_kid, "typ": "JWT"}
            verify_independently(base, token)
        # The old key's tokens still verify until they expire (previous, still published).
        assert me(b, first).status_code == 200

        # Emergency: retire the signing key through the CLI; process b refuses its tokens at once.
        leaked = sign_in(a, email)
        assert me(b, leaked).status_code == 200
        out = run_cli("keys", "retire", new_kid, env=env)
        assert f"retired {new_kid}" in out
        refused = me(b, leaked)  # the very next request: the per-request statement checks the kid
        assert refused.status_code == 401, refused.text
        assert me(a, leaked).status_code == 401
        # b reloaded when it saw the retired kid: no longer published either.
        assert new_kid not in httpx.get(b + JWKS, timeout=30).text
        # Both processes sign with the replacement now (each reloaded when it saw the retired kid).
        for base in (a, b):
            replacement = sign_in(base, email)
            assert jwt.get_unverified_header(replacement)["kid"] not in (new_kid, old_kid)
            assert me(a if base == b else b, replacement).status_code == 200


def test_wrong_key_encryption_secret_is_one_line_at_start(empty_database_url: str) -> None:
    env = server_env(empty_database_url)
    run_cli("migrate", env=env)
    wrong = server_env(empty_database_url, KEY_ENCRYPTION_SECRET="a-different-secret-" + "w" * 30)
    for command in (["serve"], ["migrate"]):
        result = _run_cli(*command, env=wrong, timeout=60)
        assert result.returncode == 1, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert "KEY_ENCRYPTION_SECRET" in lines[0]
        assert "Traceback" not in result.stderr + result.stdout
    unknown = _run_cli("keys", "retire", "no-such-kid", env=env)
    assert unknown.returncode == 1
    assert unknown.stderr.strip().splitlines() == ["error: No signing key 'no-such-kid'"]
