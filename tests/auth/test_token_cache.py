"""The cache of verified access tokens: it saves the signature check and nothing else.

Every revocation still acts on the next request (the per-request query runs on a hit too), a key
retired or gone from the key ring refuses its cached tokens, entries are never used at or after
their `exp`, and the cache holds at most its configured number of entries.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncConnection, async_sessionmaker

from tests.fixtures.app import Account, make_account, runtime_of
from tests.fixtures.helpers import API, TEST_SECRET, assert_problem, bearer
from userapi.core.config import Settings
from userapi.core.exceptions import InvalidToken
from userapi.core.keyring import KeyRing
from userapi.core.security import AccessClaims, TokenCodec, UnknownKeyId, VerifiedTokens, hmac_key_entry
from userapi.keys.service import KeyService

ME = f"{API}/users/me"


def claims(expires_at: float) -> AccessClaims:
    return AccessClaims(
        user_id=uuid.uuid4(),
        token_version=0,
        session_id=None,
        jti=uuid.uuid4().hex,
        expires_at=int(expires_at),
    )


def count_verifications(codec: TokenCodec, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records each token the codec verifies in full (a cache miss)."""
    verified: list[str] = []
    full = codec._verify

    def counting(token: str) -> Any:
        verified.append(token)
        return full(token)

    monkeypatch.setattr(codec, "_verify", counting)
    return verified


# --- the cache itself ---------------------------------------------------------------------------------


def test_the_cache_is_bounded_and_evicts_the_least_recently_used() -> None:
    cache = VerifiedTokens(max_entries=2)
    now = time.time()
    for token in ("a", "b"):
        cache.put(token, claims(now + 60), "kid", now)
    assert cache.get("a", now) is not None  # "a" is now the most recently used
    cache.put("c", claims(now + 60), "kid", now)

    assert len(cache) == 2
    assert cache.get("b", now) is None
    assert cache.get("a", now) is not None
    assert cache.get("c", now) is not None


def test_an_entry_is_never_used_at_its_exp_and_is_dropped_there() -> None:
    cache = VerifiedTokens(max_entries=10)
    now = time.time()
    expires = claims(now + 30)
    cache.put("token", expires, "kid", now)

    assert cache.get("token", expires.expires_at - 0.001) is not None
    assert cache.get("token", expires.expires_at) is None
    assert len(cache) == 0


def test_expired_entries_at_the_cold_end_go_on_insert() -> None:
    cache = VerifiedTokens(max_entries=10)
    now = time.time()
    cache.put("old", claims(now + 1), "kid", now)
    cache.put("new", claims(now + 600), "kid", now + 5)
    assert len(cache) == 1
    assert cache.get("new", now + 5) is not None


def test_size_zero_turns_the_cache_off() -> None:
    cache = VerifiedTokens(max_entries=0)
    now = time.time()
    cache.put("token", claims(now + 60), "kid", now)
    assert len(cache) == 0
    assert cache.get("token", now) is None


def test_entries_are_keyed_by_the_exact_token() -> None:
    cache = VerifiedTokens(max_entries=10)
    now = time.time()
    cache.put("header.payload.signature", claims(now + 60), "kid", now)
    assert cache.get("header.payload.signaturE", now) is None
    assert cache.get("header.payload.signature ", now) is None


# --- the codec with the cache ---------------------------------------------------------------------------


@pytest.fixture
def hmac_codec(settings: Settings) -> TokenCodec:
    ring = KeyRing(loader=None, refresh_seconds=30)
    ring.replace([hmac_key_entry(SecretStr(TEST_SECRET))])
    return TokenCodec(settings, ring)


def test_a_token_is_verified_once_while_it_is_cached(
    hmac_codec: TokenCodec, monkeypatch: pytest.MonkeyPatch
) -> None:
    verified = count_verifications(hmac_codec, monkeypatch)
    token = hmac_codec.encode_access(uuid.uuid4(), 3)

    first, second = hmac_codec.decode_access(token), hmac_codec.decode_access(token)
    assert first == second
    assert first.token_version == 3
    assert verified == [token]


def test_a_cached_token_whose_key_left_the_ring_or_retired_is_refused(hmac_codec: TokenCodec) -> None:
    token = hmac_codec.encode_access(uuid.uuid4(), 0)
    hmac_codec.decode_access(token)
    entry = hmac_key_entry(SecretStr(TEST_SECRET))

    hmac_codec.keys.replace([dataclasses.replace(entry, retires_at=time.time() - 1)])
    with pytest.raises(UnknownKeyId):
        hmac_codec.decode_access(token)
    assert len(hmac_codec.verified) == 0

    hmac_codec.keys.replace([entry])
    hmac_codec.decode_access(token)  # cached again
    hmac_codec.keys.replace([])
    with pytest.raises(UnknownKeyId):
        hmac_codec.decode_access(token)


def test_a_forgery_is_never_cached(hmac_codec: TokenCodec) -> None:
    token = hmac_codec.encode_access(uuid.uuid4(), 0)
    hmac_codec.decode_access(token)
    header, payload, signature = token.split(".")
    forged = f"{header}.{payload}.{'A' * len(signature)}"
    for _ in range(2):
        with pytest.raises(InvalidToken):
            hmac_codec.decode_access(forged)
    assert len(hmac_codec.verified) == 1
    assert hmac_codec.verified.get(forged, time.time()) is None


def test_settings_bound_the_cache(settings: Settings) -> None:
    codec = TokenCodec(
        settings.model_copy(update={"access_token_cache_size": 3}), KeyRing(loader=None, refresh_seconds=30)
    )
    codec.keys.replace([hmac_key_entry(SecretStr(TEST_SECRET))])
    for _ in range(5):
        codec.decode_access(codec.encode_access(uuid.uuid4(), 0))
    assert len(codec.verified) == 3


# --- through the API: every revocation acts on the next request, cached or not ---------------------------


async def cached_me(
    app: FastAPI, client: httpx.AsyncClient, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GET /users/me twice; the second request takes the verification from the cache."""
    codec = runtime_of(app).tokens
    assert (await client.get(ME, headers=bearer(token))).status_code == 200
    verified = count_verifications(codec, monkeypatch)
    assert (await client.get(ME, headers=bearer(token))).status_code == 200
    assert verified == [], "the second request verified the token again"
    assert codec.verified.get(token, time.time()) is not None


async def test_a_logged_out_session_is_refused_on_the_next_request_though_cached(
    app: FastAPI, client: httpx.AsyncClient, user: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = user["tokens"]["access_token"]
    await cached_me(app, client, token, monkeypatch)
    logout = await client.post(f"{API}/auth/logout", json={"refresh_token": user["tokens"]["refresh_token"]})
    assert logout.status_code == 204

    response = await client.get(ME, headers=bearer(token))
    assert_problem(response, 401, "invalid_token")
    assert "session has ended" in response.json()["detail"]


async def test_a_deactivated_user_is_refused_on_the_next_request_though_cached(
    app: FastAPI, client: httpx.AsyncClient, user: Account, admin: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = user["tokens"]["access_token"]
    await cached_me(app, client, token, monkeypatch)
    patched = await client.patch(
        f"{API}/users/{user['id']}", json={"is_active": False}, headers=admin.headers
    )
    assert patched.status_code == 200, patched.text

    response = await client.get(ME, headers=bearer(token))
    assert_problem(response, 401, "invalid_token")


async def test_a_role_change_acts_on_the_next_request_though_cached(
    app: FastAPI, client: httpx.AsyncClient, user: Account, admin: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = user["tokens"]["access_token"]
    await cached_me(app, client, token, monkeypatch)
    assert (await client.get(f"{API}/users", headers=bearer(token))).status_code == 403
    promoted = await client.patch(f"{API}/users/{user['id']}", json={"role": "admin"}, headers=admin.headers)
    assert promoted.status_code == 200
    assert (await client.get(f"{API}/users", headers=bearer(token))).status_code == 200


async def test_a_retired_key_refuses_its_cached_tokens_on_the_next_request(
    app: FastAPI,
    client: httpx.AsyncClient,
    user: Account,
    db_conn: AsyncConnection,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Retired by another process (the CLI): this one's ring still holds the key, the query refuses it."""
    token = user["tokens"]["access_token"]
    await cached_me(app, client, token, monkeypatch)
    maker = async_sessionmaker(bind=db_conn, expire_on_commit=False, join_transaction_mode="create_savepoint")
    async with maker() as session:
        await KeyService.build(session, settings).retire(jwt.get_unverified_header(token)["kid"])
        await session.commit()

    response = await client.get(ME, headers=bearer(token))
    assert_problem(response, 401, "invalid_token")
    assert "retired" in response.json()["detail"]


async def test_a_password_change_refuses_the_old_tokens_though_cached(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = await make_account(client)
    other = await client.post(
        f"{API}/auth/login", json={"email": account["email"], "password": account["password"]}
    )
    old = other.json()["access_token"]
    await cached_me(app, client, old, monkeypatch)
    changed = await client.post(
        f"{API}/users/me/password",
        json={"current_password": account["password"], "new_password": "an entirely new passphrase"},
        headers=account.headers,
    )
    assert changed.status_code == 204, changed.text
    assert_problem(await client.get(ME, headers=bearer(old)), 401, "invalid_token")
