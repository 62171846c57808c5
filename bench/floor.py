"""The floor: a bare ASGI app doing the least work each benchmarked endpoint needs (no framework, no ORM).

Every headline figure of the bench is a ratio to this app, served the same way as the service
(uvicorn, uvloop + httptools, the same worker count), so the figures say what the framework, the
ORM and our own layers cost, not how fast this machine is. Each route does what the endpoint must:

- GET  /api/v1/users/me     verify the access token with PyJWT (same claims, options, algorithm:
                            RS256 with the service's public key, found by the token's `kid`),
                            read the user by primary key plus its session's liveness in one
                            query, check active/version, answer the user as JSON (orjson)
- GET  /api/v1/users        the same authentication plus the admin role, then one keyset page
- POST /api/v1/auth/login   read the user by canonical email, bcrypt verify (NFKC password) off the
                            loop, insert the refresh token and the audit event (one statement), sign
                            the access token (RS256 with a key of the service's size, its own)
- POST /api/v1/auth/register  canonical email, bcrypt hash off the loop, insert the user and the event
- GET  /health/live, /health/ready

Configured by environment: FLOOR_DATABASE_URL, FLOOR_JWKS_URL (the service's
/.well-known/jwks.json, read once at start-up: the floor verifies exactly the tokens the service
issues, with the same asymmetric algorithm), JWT_ISSUER, JWT_AUDIENCE, ACCESS_TOKEN_TTL_SECONDS,
REFRESH_TOKEN_TTL_SECONDS, BCRYPT_ROUNDS, DB_POOL_SIZE.
Run: uvicorn bench.floor:app --loop uvloop --http httptools --workers N --no-access-log
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import secrets
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import asyncpg
import bcrypt
import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric import rsa

# The service's canonical forms (pure functions, no framework): the floor must do that work too.
from userapi.core.canonical import (
    InvalidEmail,
    canonical_email,
    canonical_email_or_none,
    canonical_email_prefix,
    canonical_password,
)
from userapi.keys.constants import RSA_KEY_BITS  # the service's key size: a floor login signs at its cost

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_REQUIRED_CLAIMS = ["sub", "exp", "iat", "jti", "iss", "aud", "typ", "ver"]
_USER_COLUMNS = "u.id, u.email, u.full_name, u.role, u.is_active, u.created_at, u.updated_at"
_AUTH_SQL = f"""
SELECT {_USER_COLUMNS}, u.token_version,
       ($2::uuid IS NULL OR EXISTS (
           SELECT 1 FROM refresh_tokens t WHERE t.family_id = $2 AND t.revoked_at IS NULL)) AS live
FROM users u WHERE u.id = $1
"""
_LOGIN_SQL = "SELECT id, password_hash, is_active, token_version FROM users WHERE email = $1"
_SESSION_SQL = """
WITH t AS (
    INSERT INTO refresh_tokens (user_id, family_id, token_hash, expires_at, user_agent, ip)
    VALUES ($1, $2, $3, $4, $5, $6))
INSERT INTO auth_events (type, user_id, ip, user_agent) VALUES ('login_succeeded', $1, $6, $5)
"""
_REGISTER_SQL = """
WITH u AS (
    INSERT INTO users (email, password_hash, full_name) VALUES ($1, $2, $3)
    ON CONFLICT (email) DO NOTHING
    RETURNING id, email, full_name, role, is_active, created_at, updated_at),
e AS (INSERT INTO auth_events (type, user_id, ip, user_agent) SELECT 'signup', id, $4, $5 FROM u)
SELECT * FROM u
"""
_JSON = (b"content-type", b"application/json")
_FLOOR_KID = "floor"


def _prehash(password: str) -> bytes:
    # The service's scheme (SHA-256, base64, then bcrypt), so both verify the same stored hashes.
    return base64.b64encode(hashlib.sha256(password.encode("utf-8")).digest())


def _verify(password: str, password_hash: str) -> bool:
    try:
        return bcrypt.checkpw(_prehash(canonical_password(password)), password_hash.encode("ascii"))
    except ValueError:
        return False


def _hash(password: str, rounds: int) -> str:
    return bcrypt.hashpw(_prehash(canonical_password(password)), bcrypt.gensalt(rounds)).decode("ascii")


def _user_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "email": row["email"],
        "full_name": row["full_name"],
        "role": row["role"],
        "is_active": row["is_active"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def _encode_cursor(row: asyncpg.Record) -> str:
    raw = orjson.dumps([row["created_at"].isoformat(), str(row["id"])])
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    created_at, user_id = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    return datetime.fromisoformat(created_at), uuid.UUID(user_id)


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Floor:
    def __init__(self) -> None:
        self.pool: asyncpg.Pool | None = None
        # kid -> (verification key, its one algorithm); filled at start-up from the service's JWKS.
        self.keys: dict[str, tuple[Any, str]] = {}
        # Logins on the floor sign with a key of its own, of the service's algorithm and size (the
        # service's private key is sealed in its database): the same signing cost per login.
        self.signing_key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
        self.keys[_FLOOR_KID] = (self.signing_key.public_key(), "RS256")
        self.issuer = os.environ.get("JWT_ISSUER", "userapi")
        self.audience = os.environ.get("JWT_AUDIENCE", "userapi")
        self.access_ttl = int(os.environ.get("ACCESS_TOKEN_TTL_SECONDS", "900"))
        self.refresh_ttl = int(os.environ.get("REFRESH_TOKEN_TTL_SECONDS", str(14 * 24 * 3600)))
        self.rounds = int(os.environ.get("BCRYPT_ROUNDS", "12"))
        self.decoder = jwt.PyJWT(options={"require": _REQUIRED_CLAIMS})
        self.dummy_hash = _hash(secrets.token_urlsafe(16), self.rounds)
        self.routes: dict[tuple[str, str], Callable[[Scope, Receive], Awaitable[tuple[int, Any]]]] = {
            ("GET", "/api/v1/users/me"): self.me,
            ("GET", "/api/v1/users"): self.users,
            ("POST", "/api/v1/auth/login"): self.login,
            ("POST", "/api/v1/auth/register"): self.register,
            ("GET", "/health/live"): self.live,
            ("GET", "/health/ready"): self.ready,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        route = self.routes.get((scope["method"], scope["path"]))
        try:
            if route is None:
                raise _Refused(404, "not found")
            status, payload = await route(scope, receive)
        except _Refused as exc:
            status, payload = exc.status, {"status": exc.status, "detail": str(exc)}
        body = orjson.dumps(payload)
        headers = [_JSON, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if url := os.environ.get("FLOOR_JWKS_URL"):
                    self.keys |= await asyncio.get_running_loop().run_in_executor(None, _read_jwks, url)
                size = int(os.environ.get("DB_POOL_SIZE", "20"))
                # reset: asyncpg's default runs a reset query (advisory locks, LISTEN, GUCs) on every
                # release, a round trip per request for state these handlers never create.
                self.pool = await asyncpg.create_pool(
                    os.environ["FLOOR_DATABASE_URL"], min_size=1, max_size=size, reset=_no_reset
                )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.pool is not None:
                    await self.pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    @property
    def db(self) -> asyncpg.Pool:
        assert self.pool is not None
        return self.pool

    async def _authenticate(self, scope: Scope) -> asyncpg.Record:
        token = b""
        for name, value in scope["headers"]:
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                token = value[7:]
        if not token:
            raise _Refused(401, "no token")
        try:
            # As the service does: the key by the header's kid, the algorithm from the key, not `alg`.
            key, algorithm = self.keys[jwt.get_unverified_header(token)["kid"]]
            claims = self.decoder.decode(
                token, key, algorithms=[algorithm], audience=self.audience, issuer=self.issuer
            )
            version = claims["ver"]
            if claims["typ"] != "access" or not isinstance(version, int) or isinstance(version, bool):
                raise _Refused(401, "bad token")
            sid = claims.get("sid")
            user_id, session_id = uuid.UUID(claims["sub"]), uuid.UUID(sid) if sid is not None else None
        except (jwt.PyJWTError, ValueError, TypeError, AttributeError, KeyError):
            raise _Refused(401, "bad token") from None
        row = await self.db.fetchrow(_AUTH_SQL, user_id, session_id)
        if row is None or not row["is_active"] or row["token_version"] != version or not row["live"]:
            raise _Refused(401, "session ended")
        return row

    async def me(self, scope: Scope, receive: Receive) -> tuple[int, Any]:
        return 200, _user_json(await self._authenticate(scope))

    async def users(self, scope: Scope, receive: Receive) -> tuple[int, Any]:
        if (await self._authenticate(scope))["role"] != "admin":
            raise _Refused(403, "not an admin")
        query = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode("latin-1")).items()}
        try:
            limit = int(query.get("limit", "20"))
            after = _decode_cursor(query["cursor"]) if "cursor" in query else None
        except (ValueError, TypeError):
            raise _Refused(422, "bad query") from None
        if not 1 <= limit <= 100:
            raise _Refused(422, "bad limit")
        where: list[str] = []
        args: list[Any] = []
        if after is not None:
            args += after
            where.append(f"(created_at, id) > (${len(args) - 1}, ${len(args)})")
        if prefix := canonical_email_prefix(query.get("email", "")):
            args.append(prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
            where.append(f"email LIKE ${len(args)} ESCAPE '\\'")
        args.append(limit + 1)
        sql = (
            "SELECT id, email, full_name, role, is_active, created_at, updated_at FROM users"
            + (" WHERE " + " AND ".join(where) if where else "")
            + f" ORDER BY created_at, id LIMIT ${len(args)}"
        )
        rows = await self.db.fetch(sql, *args)
        next_cursor = _encode_cursor(rows[limit - 1]) if len(rows) > limit else None
        return 200, {"items": [_user_json(r) for r in rows[:limit]], "next_cursor": next_cursor}

    async def login(self, scope: Scope, receive: Receive) -> tuple[int, Any]:
        body = await _read_json(receive)
        email, password = canonical_email_or_none(str(body["email"])), str(body["password"])
        user = await self.db.fetchrow(_LOGIN_SQL, email) if email is not None else None
        stored = user["password_hash"] if user is not None else self.dummy_hash
        valid = await asyncio.get_running_loop().run_in_executor(None, _verify, password, stored)
        if user is None or not valid or not user["is_active"]:
            raise _Refused(401, "Incorrect email or password")
        refresh, family = secrets.token_urlsafe(32), uuid.uuid4()
        expires = datetime.now(UTC) + timedelta(seconds=self.refresh_ttl)
        agent, ip = _user_agent(scope), _client_ip(scope)
        token_hash = hashlib.sha256(refresh.encode()).digest()
        await self.db.execute(_SESSION_SQL, user["id"], family, token_hash, expires, agent, ip)
        now = int(time.time())
        claims = {
            "sub": str(user["id"]),
            "iat": now,
            "exp": now + self.access_ttl,
            "jti": uuid.uuid4().hex,
            "iss": self.issuer,
            "aud": self.audience,
            "typ": "access",
            "ver": user["token_version"],
            "sid": str(family),
        }
        access = jwt.encode(claims, self.signing_key, algorithm="RS256", headers={"kid": _FLOOR_KID})
        return 200, {
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "bearer",
            "expires_in": self.access_ttl,
        }

    async def register(self, scope: Scope, receive: Receive) -> tuple[int, Any]:
        body = await _read_json(receive)
        password = str(body["password"])
        try:
            email = canonical_email(str(body["email"]))
        except InvalidEmail:
            raise _Refused(422, "invalid") from None
        if len(canonical_password(password)) < 8:
            raise _Refused(422, "invalid")
        loop = asyncio.get_running_loop()
        password_hash = await loop.run_in_executor(None, _hash, password, self.rounds)
        row = await self.db.fetchrow(
            _REGISTER_SQL, email, password_hash, body.get("full_name"), _client_ip(scope), _user_agent(scope)
        )
        if row is None:
            raise _Refused(409, "email taken")
        return 201, _user_json(row)

    async def live(self, scope: Scope, receive: Receive) -> tuple[int, Any]:
        return 200, {"status": "ok"}

    async def ready(self, scope: Scope, receive: Receive) -> tuple[int, Any]:
        await self.db.fetchval("SELECT 1")
        return 200, {"status": "ok"}


def _read_jwks(url: str) -> dict[str, tuple[Any, str]]:
    """kid -> (public key, algorithm) of every key in a JWK Set (RFC 7517) served at `url`."""
    with urllib.request.urlopen(url, timeout=10) as response:
        document = orjson.loads(response.read())
    found = {}
    for jwk in document["keys"]:
        key = jwt.PyJWK(jwk)
        found[jwk["kid"]] = (key.key, jwk["alg"])
    if not found:
        raise RuntimeError(f"no keys at {url}")
    return found


async def _no_reset(connection: asyncpg.Connection) -> None:
    return None


async def _read_json(receive: Receive) -> dict[str, Any]:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    try:
        data = orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError:
        raise _Refused(422, "not JSON") from None
    if not isinstance(data, dict) or "email" not in data or "password" not in data:
        raise _Refused(422, "email and password required")
    return data


def _client_ip(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _user_agent(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"user-agent":
            return str(value.decode("latin-1"))[:512]
    return None


app = Floor()
