"""Tokens: login (JSON and OAuth2 form), the access token's claims, and every forged or broken token."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from pydantic import SecretStr, ValidationError

from tests.fixtures.app import Account, make_account, runtime_of
from tests.fixtures.helpers import API, PASSWORD, TEST_SECRET, assert_problem, bearer, run_cli, server_env
from userapi.core.config import Settings
from userapi.core.keyring import KeyEntry, KeyRing
from userapi.core.security import TokenCodec, hmac_key_entry

ME = f"{API}/users/me"
TOKEN_KEYS = {"access_token", "refresh_token", "token_type", "expires_in"}
INVALID_TOKEN_CHALLENGE = 'Bearer error="invalid_token"'


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def b64url_json(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def claims_of(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


# The app's signing key, set by the `good_claims` fixture every signing test uses.
_SIGNER: dict[str, KeyEntry] = {}


def sign(claims: dict[str, Any], key: str | None = None, algorithm: str | None = None) -> str:
    """Sign as the app does (its current key and kid); with `key`/`algorithm`: a forgery under our kid."""
    entry = _SIGNER["current"]
    if key is None and algorithm is None:
        return jwt.encode(claims, entry.signing_key, algorithm=entry.algorithm, headers={"kid": entry.kid})
    return jwt.encode(claims, key or TEST_SECRET, algorithm=algorithm or "HS256", headers={"kid": entry.kid})


def assert_invalid_token(response: httpx.Response) -> None:
    assert_problem(response, 401, "invalid_token")
    assert response.headers["www-authenticate"] == INVALID_TOKEN_CHALLENGE


# --- login and token issuance --------------------------------------------------------------------------


def check_pair(pair: dict[str, Any], user_id: str, ttl: int) -> dict[str, Any]:
    assert set(pair) == TOKEN_KEYS
    assert pair["token_type"] == "bearer"
    assert pair["expires_in"] == ttl
    assert isinstance(pair["refresh_token"], str)
    assert len(pair["refresh_token"]) >= 40
    claims = claims_of(pair["access_token"])
    header = jwt.get_unverified_header(pair["access_token"])
    assert header["alg"] == "RS256"  # the default: an asymmetric key from the JWKS
    assert isinstance(header["kid"], str)
    assert claims["sub"] == user_id
    assert claims["iss"] == "userapi"
    assert claims["aud"] == "userapi"
    assert claims["typ"] == "access"
    assert claims["exp"] - claims["iat"] == ttl
    assert abs(claims["iat"] - time.time()) < 60
    assert isinstance(claims["jti"], str)
    assert claims["jti"]
    return claims


async def test_login_json_returns_a_token_pair(
    client: httpx.AsyncClient, user: Account, settings: Settings
) -> None:
    response = await client.post(f"{API}/auth/login", json={"email": user["email"], "password": PASSWORD})

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    check_pair(response.json(), user["id"], settings.access_token_ttl_seconds)
    me = await client.get(ME, headers=bearer(response.json()["access_token"]))
    assert me.status_code == 200
    assert me.json()["id"] == user["id"]


async def test_token_form_returns_a_token_pair(
    client: httpx.AsyncClient, user: Account, settings: Settings
) -> None:
    response = await client.post(
        f"{API}/auth/token",
        data={"grant_type": "password", "username": user["email"].upper(), "password": PASSWORD},
    )

    assert response.status_code == 200, response.text
    check_pair(response.json(), user["id"], settings.access_token_ttl_seconds)
    assert (await client.get(ME, headers=bearer(response.json()["access_token"]))).status_code == 200


async def test_each_login_gets_a_new_jti(client: httpx.AsyncClient, user: Account) -> None:
    first = await client.post(f"{API}/auth/login", json={"email": user["email"], "password": PASSWORD})
    second = await client.post(f"{API}/auth/login", json={"email": user["email"], "password": PASSWORD})
    assert claims_of(first.json()["access_token"])["jti"] != claims_of(second.json()["access_token"])["jti"]
    assert first.json()["refresh_token"] != second.json()["refresh_token"]


async def test_token_form_wrong_password_is_invalid_grant(client: httpx.AsyncClient, user: Account) -> None:
    form = {"grant_type": "password", "username": user["email"], "password": "nope-nope"}
    response = await client.post(f"{API}/auth/token", data=form)
    body = assert_problem(response, 400, "invalid_grant")
    assert body["error"] == "invalid_grant"
    assert body["error_description"] == body["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"email": "a@example.com"},
        {"password": PASSWORD},
        {"email": "", "password": PASSWORD},
        {"email": "a@example.com", "password": ""},
        {"email": "a@example.com", "password": PASSWORD, "x": 1},
    ],
    ids=["empty", "no-password", "no-email", "empty-email", "empty-password", "extra-field"],
)
async def test_login_bad_body_is_422(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    assert_problem(await client.post(f"{API}/auth/login", json=body), 422, "invalid_input")


async def test_login_malformed_email_is_the_same_401(client: httpx.AsyncClient) -> None:
    response = await client.post(f"{API}/auth/login", json={"email": "not an email", "password": PASSWORD})
    assert_problem(response, 401, "invalid_credentials")


# --- attacks on the access token ------------------------------------------------------------------------


@pytest.fixture
async def good_claims(app: FastAPI, user: Account) -> dict[str, Any]:
    """The claims of a real access token, to be altered and re-signed by each attack."""
    _SIGNER["current"] = runtime_of(app).tokens.keys.signer()
    return claims_of(user["tokens"]["access_token"])


async def test_resigned_real_claims_are_accepted(
    client: httpx.AsyncClient, good_claims: dict[str, Any]
) -> None:
    """The control for every attack below: the way they build tokens works when nothing is wrong."""
    response = await client.get(ME, headers=bearer(sign(good_claims)))
    assert response.status_code == 200, response.text


async def test_alg_none_is_401(client: httpx.AsyncClient, good_claims: dict[str, Any]) -> None:
    for alg in ("none", "None", "NONE"):
        token = f"{b64url_json({'alg': alg, 'typ': 'JWT'})}.{b64url_json(good_claims)}."
        assert_invalid_token(await client.get(ME, headers=bearer(token)))


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # HS512 with our 52-byte key
async def test_another_algorithm_with_the_right_key_is_401(
    client: httpx.AsyncClient, good_claims: dict[str, Any]
) -> None:
    for alg in ("HS384", "HS512"):
        assert_invalid_token(await client.get(ME, headers=bearer(sign(good_claims, algorithm=alg))))


async def test_another_key_is_401(client: httpx.AsyncClient, good_claims: dict[str, Any]) -> None:
    token = sign(good_claims, key="another-secret-" + "y" * 40)
    assert_invalid_token(await client.get(ME, headers=bearer(token)))


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("iss", "someone-else"),
        ("iss", ""),
        ("aud", "another-service"),
        ("aud", ["another-service"]),
        ("typ", "refresh"),
        ("typ", "ACCESS"),
        ("sub", "not-a-uuid"),
        ("sub", "7d3f2b9c-1e4a-4c8b-9a55-0f6e2d1c3b4a"),  # fixed: ids must match across xdist workers
        ("ver", "0"),
        ("ver", 99),
        ("sid", "5e1c9a7d-2b3f-4d6e-8a1b-9c0d7e6f5a4b"),
        ("sid", "not-a-uuid"),
        ("exp", "tomorrow"),
    ],
)
async def test_wrong_claim_value_is_401(
    client: httpx.AsyncClient, good_claims: dict[str, Any], claim: str, value: object
) -> None:
    token = sign({**good_claims, claim: value})
    assert_invalid_token(await client.get(ME, headers=bearer(token)))


async def test_expired_token_is_401(client: httpx.AsyncClient, good_claims: dict[str, Any]) -> None:
    now = int(time.time())
    token = sign({**good_claims, "iat": now - 1000, "exp": now - 5})
    response = await client.get(ME, headers=bearer(token))
    assert_invalid_token(response)
    assert "expired" in response.json()["detail"]


async def test_tampered_payload_with_kept_signature_is_401(
    client: httpx.AsyncClient, user: Account, good_claims: dict[str, Any]
) -> None:
    other = await make_account(client)
    header, _, signature = user["tokens"]["access_token"].split(".")
    forged = f"{header}.{b64url_json({**good_claims, 'sub': other['id']})}.{signature}"
    assert_invalid_token(await client.get(ME, headers=bearer(forged)))
    # Flipping one signature character is refused too.
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    assert_invalid_token(
        await client.get(ME, headers=bearer(f"{header}.{b64url_json(good_claims)}.{flipped}"))
    )


@pytest.mark.parametrize("claim", ["sub", "exp", "iat", "jti", "iss", "aud", "typ", "ver"])
async def test_token_missing_a_required_claim_is_401(
    client: httpx.AsyncClient, good_claims: dict[str, Any], claim: str
) -> None:
    claims = {k: v for k, v in good_claims.items() if k != claim}
    assert_invalid_token(await client.get(ME, headers=bearer(sign(claims))))


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "a.b.c",
        "a.b",
        "....",
        "eyJhbGciOiJIUzI1NiJ9.e30.",
        "eyJ.eyJ.sig",
        "Bearer",
        "é" * 10,
        "x" * 4000,
    ],
)
async def test_garbage_token_is_401(client: httpx.AsyncClient, token: str) -> None:
    response = await client.get(ME, headers={"Authorization": f"Bearer {token}".encode()})
    assert_invalid_token(response)


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Basic dXNlcjpjb3JyZWN0IGhvcnNl", "Token abc", "bearer-abc"],
    ids=["missing", "empty", "scheme-only", "scheme-space", "basic", "other-scheme", "no-space"],
)
async def test_missing_token_or_wrong_scheme_is_401_with_a_bare_challenge(
    client: httpx.AsyncClient, user: Account, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await client.get(ME, headers=headers)
    assert_problem(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_lower_case_bearer_scheme_is_accepted(client: httpx.AsyncClient, user: Account) -> None:
    response = await client.get(ME, headers={"Authorization": f"bearer {user['tokens']['access_token']}"})
    assert response.status_code == 200


async def test_refresh_token_is_not_an_access_token(client: httpx.AsyncClient, user: Account) -> None:
    assert_invalid_token(await client.get(ME, headers=bearer(user["tokens"]["refresh_token"])))


# --- the signing key at start-up ---------------------------------------------------------------------


@pytest.mark.parametrize("environment", ["production", "test"])
@pytest.mark.parametrize("secret", ["", "short", "k" * 31, "é" * 15])
def test_settings_refuse_a_short_key_outside_development(environment: str, secret: str) -> None:
    with pytest.raises(ValidationError, match="JWT_SECRET must be set to at least 32 bytes"):
        Settings(_env_file=None, environment=environment, jwt_secret=secret)  # type: ignore[call-arg]


def test_settings_accept_a_32_byte_key_and_short_keys_in_development() -> None:
    assert (
        Settings(
            _env_file=None, environment="production", jwt_secret="k" * 32, key_encryption_secret="e" * 32
        ).jwt_secret.get_secret_value()
        == "k" * 32
    )  # type: ignore[call-arg]
    assert (
        Settings(_env_file=None, environment="development", jwt_secret="short").jwt_secret.get_secret_value()
        == "short"
    )  # type: ignore[call-arg]
    generated = Settings(_env_file=None, environment="development", jwt_secret="")  # type: ignore[call-arg]
    assert len(generated.jwt_secret.get_secret_value().encode()) >= 32


def test_serve_refuses_a_short_key_in_production(database_url: str) -> None:
    result = run_cli(
        "serve", env=server_env(database_url, ENVIRONMENT="production", JWT_SECRET="short"), timeout=30
    )

    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "JWT_SECRET" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert "userapi: API" not in result.stdout  # it never got as far as serving


def test_extra_claims_reach_the_token_but_never_replace_the_codec_s_own(settings: Settings) -> None:
    """Other features add claims (permissions, amr) through one argument; sub/exp/role... stay ours."""
    codec = TokenCodec(
        settings,
        KeyRing(loader=None, refresh_seconds=30, fixed_signer=hmac_key_entry(SecretStr(TEST_SECRET))),
    )
    user_id = uuid.uuid4()
    token = codec.encode_access(
        user_id, 0, extra_claims={"role": "user", "permissions": ["users:read"], "amr": ["pwd"]}
    )
    claims = jwt.decode(token, TEST_SECRET, algorithms=["HS256"], audience=settings.jwt_audience)
    assert claims["permissions"] == ["users:read"]
    assert claims["amr"] == ["pwd"]
    assert codec.decode_access(token).user_id == user_id
    assert claims["role"] == "user"
    for claim in ("sub", "exp", "sid", "iss"):
        with pytest.raises(ValueError, match=claim):
            codec.encode_access(user_id, 0, extra_claims={claim: "forged"})
