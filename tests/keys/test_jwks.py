"""JWKS and discovery documents, kid-bound verification, and key-confusion attacks on access tokens."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet
from sqlalchemy.ext.asyncio import AsyncConnection, async_sessionmaker

from tests.fixtures.app import Account, build_test_app, make_account, runtime_of
from tests.fixtures.helpers import API, TEST_SECRET, assert_problem, bearer, make_settings
from userapi.core.config import Settings
from userapi.keys.service import KeyService

ME = f"{API}/users/me"
JWKS = "/.well-known/jwks.json"
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def b64url_json(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def header_of(token: str) -> dict[str, Any]:
    return dict(jwt.get_unverified_header(token))


def claims_of(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def assert_invalid_token(response: httpx.Response) -> None:
    assert_problem(response, 401, "invalid_token")


@pytest.fixture
async def jwks(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get(JWKS)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_jwks_publishes_the_signing_key_and_no_private_member(
    client: httpx.AsyncClient, user: Account, jwks: dict[str, Any], settings: Settings
) -> None:
    token = user["tokens"]["access_token"]
    header = header_of(token)
    assert header["alg"] == settings.jwt_algorithm == "RS256"
    published = {key["kid"]: key for key in jwks["keys"]}
    assert header["kid"] in published
    for key in jwks["keys"]:
        assert not PRIVATE_MEMBERS & key.keys(), key
        assert key["use"] == "sig"
        assert key["alg"] in ("EdDSA", "ES256", "RS256")
    assert jwks["keys"][0]["kid"] == header["kid"], "the signing key comes first"
    # The role rides along as information for other services.
    assert claims_of(token)["role"] == "user"


async def test_jwks_caching_headers_and_conditional_get(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    first = await client.get(JWKS)
    assert first.headers["cache-control"] == f"public, max-age={settings.jwks_max_age}"
    assert settings.jwks_max_age == settings.keys_publish_delay_seconds - settings.keys_refresh_seconds
    etag = first.headers["etag"]
    assert etag.startswith('"')
    assert etag.endswith('"')
    for sent in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = await client.get(JWKS, headers={"If-None-Match": sent})
        assert again.status_code == 304, sent
        assert again.content == b""
        assert again.headers["etag"] == etag
        assert again.headers["cache-control"] == first.headers["cache-control"]
    changed = await client.get(JWKS, headers={"If-None-Match": '"something-else"'})
    assert changed.status_code == 200
    assert changed.json() == first.json()


async def test_discovery_document_says_only_what_is_supported(
    client: httpx.AsyncClient, settings: Settings, user: Account
) -> None:
    response = await client.get("/.well-known/openid-configuration")
    assert response.status_code == 200
    doc = response.json()
    assert doc["issuer"] == settings.jwt_issuer
    assert doc["jwks_uri"] == f"{settings.issuer_url}{JWKS}"
    assert doc["token_endpoint"] == f"{settings.issuer_url}{API}/auth/token"
    assert doc["grant_types_supported"] == ["password"]
    assert doc["response_types_supported"] == []
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert "authorization_endpoint" not in doc
    # The claims it names are the ones a real token carries (but userapi's private typ and ver).
    issued = set(claims_of(user["tokens"]["access_token"])) - {"typ", "ver"}
    assert set(doc["claims_supported"]) == issued
    assert response.headers["cache-control"].startswith("public, max-age=")
    # No URL is built from the Host header.
    spoofed = await client.get("/.well-known/openid-configuration", headers={"Host": "evil.example.com"})
    assert "evil" not in spoofed.text


async def test_a_second_library_verifies_with_the_jwks_alone(
    client: httpx.AsyncClient, user: Account, jwks: dict[str, Any], settings: Settings
) -> None:
    token = user["tokens"]["access_token"]
    keys = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
    decoded = jose_jwt.decode(token, keys, algorithms=[header_of(token)["alg"]])
    jose_jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": settings.jwt_issuer},
        aud={"essential": True, "value": settings.jwt_audience},
        exp={"essential": True},
    ).validate(decoded.claims)
    assert decoded.claims["sub"] == user["id"]


# --- key confusion ------------------------------------------------------------------------------------


def _our_public_pem(jwks: dict[str, Any]) -> tuple[str, bytes]:
    key = jwks["keys"][0]
    public = jwt.algorithms.RSAAlgorithm.from_jwk(key)
    assert isinstance(public, rsa.RSAPublicKey)
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key["kid"], pem


def _hmac(claims: dict[str, Any], secret: bytes, header: dict[str, Any]) -> str:
    import hashlib
    import hmac

    signing_input = f"{b64url_json({'alg': 'HS256', **header})}.{b64url_json(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).decode().rstrip('=')}"


async def test_hs256_signed_with_the_public_key_is_401(
    client: httpx.AsyncClient, user: Account, jwks: dict[str, Any]
) -> None:
    kid, pem = _our_public_pem(jwks)
    claims = claims_of(user["tokens"]["access_token"])
    for secret in (pem, pem.strip(), json.dumps(jwks["keys"][0]).encode()):
        assert_invalid_token(await client.get(ME, headers=bearer(_hmac(claims, secret, {"kid": kid}))))


async def test_alg_none_with_our_kid_is_401(
    client: httpx.AsyncClient, user: Account, jwks: dict[str, Any]
) -> None:
    claims = claims_of(user["tokens"]["access_token"])
    for alg in ("none", "None", "NONE", "RS256"):
        token = f"{b64url_json({'alg': alg, 'kid': jwks['keys'][0]['kid']})}.{b64url_json(claims)}."
        assert_invalid_token(await client.get(ME, headers=bearer(token)))


async def test_an_attacker_key_is_401_whatever_the_header_says(
    client: httpx.AsyncClient, user: Account, jwks: dict[str, Any]
) -> None:
    claims = claims_of(user["tokens"]["access_token"])
    ours = jwks["keys"][0]["kid"]
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    attacker_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(attacker.public_key()))
    headers: list[dict[str, Any]] = [
        {"kid": ours},  # our kid, their signature
        {"kid": ours, "jwk": attacker_jwk},  # embedded key (CVE-2018-0114 style)
        {"kid": "attacker", "jwk": attacker_jwk},
        {"kid": ours, "jku": "http://127.0.0.1:9/jwks.json"},
        {"kid": ours, "x5u": "http://127.0.0.1:9/cert.pem"},
        {"kid": ours, "x5c": ["MIIB"]},
        {"kid": ours, "crit": ["exp"]},
        {},  # no kid at all
    ]
    for header in headers:
        token = jwt.encode(claims, attacker, algorithm="RS256", headers=header)
        assert_invalid_token(await client.get(ME, headers=bearer(token)))
    # ES256 with our kid: another algorithm than the key's is refused before any signature check.
    ec_key = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode(claims, ec_key, algorithm="ES256", headers={"kid": ours})
    assert_invalid_token(await client.get(ME, headers=bearer(token)))


@pytest.mark.parametrize(
    "kid",
    [
        "../../../../dev/null",
        "/etc/passwd",
        "",
        " ",
        "x" * 5000,
        "' OR 1=1 --",
        1,
        ["a"],
        {"a": 1},
        None,
        True,
    ],
)
async def test_odd_kids_are_401_never_500(
    app: FastAPI, client: httpx.AsyncClient, user: Account, kid: object
) -> None:
    claims = claims_of(user["tokens"]["access_token"])
    token = _hmac(claims, TEST_SECRET.encode(), {"kid": kid})
    assert_invalid_token(await client.get(ME, headers=bearer(token)))


async def test_unknown_kids_reload_the_key_set_at_most_once_a_second(
    app: FastAPI, client: httpx.AsyncClient, user: Account
) -> None:
    keyring = runtime_of(app).tokens.keys
    calls = 0
    loader = keyring.loader

    async def counting() -> Any:
        nonlocal calls
        calls += 1
        return await loader()

    keyring.loader = counting
    claims = claims_of(user["tokens"]["access_token"])
    started = time.monotonic()
    for n in range(30):
        token = _hmac(claims, b"x" * 32, {"kid": f"made-up-{n}"})
        assert_invalid_token(await client.get(ME, headers=bearer(token)))
    assert 1 <= calls <= 1 + int(time.monotonic() - started)


async def test_a_token_of_another_real_key_with_a_swapped_kid_is_401(
    app: FastAPI, client: httpx.AsyncClient, user: Account, db_conn: AsyncConnection, settings: Settings
) -> None:
    """Two published keys: a token signed by one and naming the other fails (kid pins the key)."""
    maker = async_sessionmaker(bind=db_conn, expire_on_commit=False, join_transaction_mode="create_savepoint")
    async with maker() as session:
        keys = KeyService.build(session, settings)
        pending = await keys.rotate()
        # The app's loader reads committed keys; hand it this transaction's set directly.
        runtime_of(app).tokens.keys.replace(await keys.entries(strict=True))
    assert runtime_of(app).tokens.keys.verifier(pending.kid) is not None, "both keys are held"
    token = user["tokens"]["access_token"]
    _, payload, signature = token.split(".")
    swapped = f"{b64url_json({**header_of(token), 'kid': pending.kid})}.{payload}.{signature}"
    assert_invalid_token(await client.get(ME, headers=bearer(swapped)))
    assert (await client.get(ME, headers=bearer(token))).status_code == 200


async def test_retired_key_is_refused_at_once(
    app: FastAPI, client: httpx.AsyncClient, user: Account, db_conn: AsyncConnection, settings: Settings
) -> None:
    """No reload needed: the per-request statement checks the token's key is unretired."""
    token = user["tokens"]["access_token"]
    maker = async_sessionmaker(bind=db_conn, expire_on_commit=False, join_transaction_mode="create_savepoint")
    async with maker() as session:
        keys = KeyService.build(session, settings)
        await keys.retire(header_of(token)["kid"])
        await session.commit()  # releases the savepoint; the outer transaction still rolls back
        retired_set = await keys.entries(strict=True)
    response = await client.get(ME, headers=bearer(token))
    assert_invalid_token(response)
    assert "retired" in response.json()["detail"]
    # A fresh login signs with the replacement and works (the app's loader reads committed keys
    # only; this transaction's set is handed to it).
    runtime_of(app).tokens.keys.replace(retired_set)
    fresh = await make_account(client)
    assert header_of(fresh["tokens"]["access_token"])["kid"] != header_of(token)["kid"]
    assert (await client.get(ME, headers=fresh.headers)).status_code == 200


# --- HS256 (existing installs) ------------------------------------------------------------------------


async def test_hs256_mode_signs_with_jwt_secret_and_names_its_kid(
    engine: Any, db_conn: AsyncConnection, database_url: str
) -> None:
    settings = make_settings(database_url, jwt_algorithm="HS256")
    app = build_test_app(settings, engine, db_conn)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        account = await make_account(client)
        token = account["tokens"]["access_token"]
        header = header_of(token)
        assert header["alg"] == "HS256"
        assert header["kid"].startswith("hs256-")
        jwt.decode(token, TEST_SECRET, algorithms=["HS256"], audience="userapi")
        assert (await client.get(ME, headers=account.headers)).status_code == 200
        jwks = (await client.get(JWKS)).json()
        assert all("k" not in key for key in jwks["keys"]), "the HMAC secret is never published"
        # The HMAC kid with an asymmetric algorithm, or a stored kid with HMAC: both refused.
        claims = claims_of(token)
        assert_invalid_token(
            await client.get(ME, headers=bearer(jwt.encode(claims, "x" * 40, "HS256", headers=header)))
        )
