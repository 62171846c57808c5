"""Password hashing (bcrypt, off the event loop) and access-token encoding/decoding (PyJWT, key ring)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import bcrypt
import jwt
from pydantic import SecretStr

from userapi.core.canonical import canonical_password
from userapi.core.config import Settings
from userapi.core.exceptions import InvalidToken
from userapi.core.keyring import KeyEntry, KeyRing

ACCESS_TOKEN_TYPE = "access"
_REQUIRED_CLAIMS = ["sub", "exp", "iat", "jti", "iss", "aud", "typ", "ver"]


def _prehash(password: str) -> bytes:
    """SHA-256 then base64, so every byte of a long password counts.

    bcrypt reads only 72 bytes (bcrypt 5 raises beyond), and 64 Unicode characters can be
    256 UTF-8 bytes; base64 also keeps NUL bytes out of bcrypt's C string.
    """
    return base64.b64encode(hashlib.sha256(password.encode("utf-8")).digest())


def hash_password_sync(password: str, rounds: int) -> str:
    """A bcrypt hash (`$2b$NN$...`) of the password's canonical form (NFKC)."""
    return bcrypt.hashpw(_prehash(canonical_password(password)), bcrypt.gensalt(rounds)).decode("ascii")


def verify_password_sync(password: str, password_hash: str) -> bool:
    """Whether `password`, exactly as given (no normalisation here), matches a stored bcrypt hash."""
    try:
        return bcrypt.checkpw(_prehash(password), password_hash.encode("ascii"))
    except ValueError:  # a malformed stored hash never verifies
        return False


@dataclass(frozen=True, slots=True)
class PasswordCheck:
    """The outcome of verifying a password: `valid`, and whether the stored hash should be replaced
    (a different cost factor, or a hash made before passwords were NFKC-normalised)."""

    valid: bool
    rehash: bool = False

    def __bool__(self) -> bool:
        # `if await hasher.verify(...)` would always be true: make that mistake loud.
        raise TypeError("read PasswordCheck.valid, not the check itself")


def hash_rounds(password_hash: str) -> int | None:
    """The cost factor of a stored `$2b$NN$...` hash, or None if it is not one."""
    parts = password_hash.split("$")
    return int(parts[2]) if len(parts) == 4 and parts[2].isdigit() else None


class PasswordHasher:
    """bcrypt with the configured cost; hashing runs in worker threads, never on the loop."""

    def __init__(self, rounds: int, threads: int | None = None) -> None:
        self.rounds = rounds
        # bcrypt runs at most this many at once per process (default: one per core). anyio's
        # default pool would run one per request in flight (16 under the login storm): no more
        # hashing gets done on 2 cores, and the event loop's thread then waits behind all of them
        # for a core, which is what /health/live's p99 during the storm measured.
        self.threads = threads or os.cpu_count() or 1
        self._limiter: tuple[asyncio.AbstractEventLoop, anyio.CapacityLimiter] | None = None
        # Unknown-email logins verify against this, so they cost the same as a wrong password.
        # Made off the start-up path (warm_up, run by the app's lifespan): a cost-12 hash is a
        # quarter of a second that readiness should not wait for.
        self._dummy_hash: str | None = None

    async def warm_up(self) -> None:
        await self._dummy()

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash(secrets.token_urlsafe(16))
        return self._dummy_hash

    def _bcrypt_threads(self) -> anyio.CapacityLimiter:
        # Made on first use in each event loop (a limiter belongs to one loop; tests run several).
        loop = asyncio.get_running_loop()
        if self._limiter is None or self._limiter[0] is not loop:
            self._limiter = (loop, anyio.CapacityLimiter(self.threads))
        return self._limiter[1]

    async def hash(self, password: str) -> str:
        return await anyio.to_thread.run_sync(
            hash_password_sync, password, self.rounds, limiter=self._bcrypt_threads()
        )

    async def verify(self, password: str, password_hash: str | None) -> PasswordCheck:
        """Check `password` against a stored hash (None: an unknown account, checked against a dummy).

        The canonical (NFKC) form is checked first. Hashes stored before passwords were
        normalised hold the raw form: when the two forms differ and the canonical one fails, the
        raw one is tried, and a match asks for a rehash (to the canonical form). An unknown
        account costs the same number of bcrypt runs as a wrong password.
        """
        stored = password_hash if password_hash is not None else await self._dummy()
        canonical = canonical_password(password)
        limiter = self._bcrypt_threads()
        valid = await anyio.to_thread.run_sync(verify_password_sync, canonical, stored, limiter=limiter)
        legacy = False
        if not valid and canonical != password:
            legacy = valid = await anyio.to_thread.run_sync(
                verify_password_sync, password, stored, limiter=limiter
            )
        if password_hash is None:
            return PasswordCheck(False)
        return PasswordCheck(valid, valid and (legacy or hash_rounds(password_hash) != self.rounds))


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    token_version: int
    session_id: uuid.UUID | None
    jti: str
    expires_at: int
    # The kid of a stored key (its retirement is checked per request); None for the HMAC key.
    stored_kid: str | None = None


class UnknownKeyId(InvalidToken):
    """The token names a kid this process does not hold (yet): reload the key set, then retry once."""


# The header members a token of ours has. Anything else is refused, not ignored: `jwk`, `jku`,
# `x5u`, `x5c` would name a key chosen by the sender, and `crit` demands extensions we do not
# implement (RFC 7515 section 4.1.11).
_ALLOWED_HEADER = frozenset({"alg", "kid", "typ"})
# Claims only the codec sets, whether or not this token carries them (extra claims cannot add them).
_RESERVED_CLAIMS = frozenset({*_REQUIRED_CLAIMS, "sid", "nbf"})


def hmac_key_entry(secret: SecretStr) -> KeyEntry:
    """The HS256 key (JWT_SECRET) as a key-ring entry. Its kid is an HMAC of the secret, so it
    names the secret without revealing anything about it, and changes when the secret changes."""
    key = secret.get_secret_value().encode()
    digest = hmac.new(key, b"userapi hs256 kid", hashlib.sha256).digest()
    kid = "hs256-" + base64.urlsafe_b64encode(digest[:12]).decode("ascii")
    return KeyEntry(
        kid=kid, algorithm="HS256", verify_key=key, signing_key=key, activates_at=0.0, stored=False
    )


class VerifiedTokens:
    """A bounded LRU of access tokens this process has verified: SHA-256 of the exact token -> its
    claims and the kid of the key that verified it.

    Why: an RS256 verification costs about 50-110 µs of CPU on the event loop, paid on every
    request for the same token (a client sends one token for its whole 15 minutes). A hit
    skips only what depends on nothing but the token's bytes and the clock: the signature and
    the claim checks. Everything that can be revoked is still checked on every request: the key
    (looked up in the key ring at each hit, so a retired or unknown kid is refused as before), and
    by the per-request query the account, its token version, its role's permissions, the
    session and the key's stored retirement. An entry is never used at or after its `exp` (PyJWT
    refuses `exp <= now` too) and is dropped when met there.

    `max_entries` bounds memory (about 300 bytes an entry: the key is a 32-byte digest, whatever
    the token's size); 0 turns the cache off. Not thread-safe: used on one event loop.
    """

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, tuple[AccessClaims, str]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def _key(token: str) -> bytes:
        # A digest, not the token: bounded size per entry, and no bearer token held in memory.
        return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()

    def get(self, token: str, now: float) -> tuple[AccessClaims, str] | None:
        """(claims, kid) of `token` if it verified before and `now` (Unix seconds) is before its exp."""
        if not self.max_entries:
            return None
        key = self._key(token)
        found = self._entries.get(key)
        if found is None:
            return None
        if now >= found[0].expires_at:
            del self._entries[key]  # expired: PyJWT would refuse it now, so must we
            return None
        self._entries.move_to_end(key)
        return found

    def put(self, token: str, claims: AccessClaims, kid: str, now: float) -> None:
        """Remember a token that just verified with key `kid`; evicts the least recently used past
        `max_entries`, and expired entries met at the cold end."""
        if not self.max_entries:
            return
        key = self._key(token)
        self._entries[key] = (claims, kid)
        self._entries.move_to_end(key)
        while self._entries:
            oldest_claims = next(iter(self._entries.values()))[0]
            if len(self._entries) <= self.max_entries and now < oldest_claims.expires_at:
                break
            self._entries.popitem(last=False)

    def discard(self, token: str) -> None:
        self._entries.pop(self._key(token), None)


class TokenCodec:
    """Encodes and verifies access tokens (RFC 7519) with the process's key ring.

    Signing uses the ring's current signer and names it in the `kid` header. Verification looks
    the token's kid up in the ring and accepts only that key's algorithm: the `alg` header is
    never trusted to pick one (RFC 8725 sections 2.1 and 3.1). Unknown kids raise UnknownKeyId.
    """

    def __init__(self, settings: Settings, keys: KeyRing) -> None:
        self.keys = keys
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self.ttl_seconds = settings.access_token_ttl_seconds
        self._decoder = jwt.PyJWT(options={"require": _REQUIRED_CLAIMS})
        self.verified = VerifiedTokens(settings.access_token_cache_size)

    def encode_access(
        self,
        user_id: uuid.UUID,
        token_version: int,
        session_id: uuid.UUID | None = None,
        extra_claims: Mapping[str, Any] | None = None,
    ) -> str:
        """A signed access token (RFC 7519), its signing key named by `kid`.

        `extra_claims` (e.g. `role`, `permissions`, `amr`) are information for other services;
        userapi itself reads the stored account on every request. Extra claims must be JSON values
        and may not replace a claim the codec sets (ValueError). Raises NoSigningKey.
        """
        signer = self.keys.signer()
        assert signer.signing_key is not None  # signer() only returns keys this process can sign with
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": str(user_id),
            "iat": now,
            "exp": now + self.ttl_seconds,
            "jti": uuid.uuid4().hex,
            "iss": self._issuer,
            "aud": self._audience,
            "typ": ACCESS_TOKEN_TYPE,
            "ver": token_version,
        }
        if session_id is not None:
            claims["sid"] = str(session_id)
        if extra_claims:
            if clash := claims.keys() & extra_claims.keys() | _RESERVED_CLAIMS & extra_claims.keys():
                raise ValueError(f"extra claims may not replace {sorted(clash)}")
            claims.update(extra_claims)
        return jwt.encode(claims, signer.signing_key, algorithm=signer.algorithm, headers={"kid": signer.kid})

    def _key_for(self, token: str) -> KeyEntry:
        header = jwt.get_unverified_header(token)
        if not header.keys() <= _ALLOWED_HEADER:
            raise InvalidToken("The access token is invalid")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise InvalidToken("The access token is invalid")
        entry = self.keys.verifier(kid)
        if entry is None:
            raise UnknownKeyId("The access token is signed with an unknown or retired key")
        return entry

    def decode_access(self, token: str) -> AccessClaims:
        """Verify signature, expiry, issuer, audience and type. Raises InvalidToken (UnknownKeyId).

        A token verified before is taken from `verified` while unexpired and while the key ring
        still holds its key unretired; anything else is verified in full.
        """
        now = time.time()
        cached = self.verified.get(token, now)
        if cached is not None:
            claims, kid = cached
            if self.keys.verifier(kid, now) is not None:
                return claims
            # Its key is gone or retired since: verify in full, which refuses it as before.
            self.verified.discard(token)
        claims, kid = self._verify(token)
        self.verified.put(token, claims, kid, now)
        return claims

    def _verify(self, token: str) -> tuple[AccessClaims, str]:
        """The claims of `token` and the kid of the key that verified it (no cache)."""
        try:
            entry = self._key_for(token)
            claims = self._decoder.decode(
                token,
                entry.verify_key,
                algorithms=[entry.algorithm],
                audience=self._audience,
                issuer=self._issuer,
            )
            if claims["typ"] != ACCESS_TOKEN_TYPE:
                raise InvalidToken("Not an access token")
            version = claims["ver"]
            if not isinstance(version, int) or isinstance(version, bool):
                raise InvalidToken("Malformed token")
            sid = claims.get("sid")
            access = AccessClaims(
                user_id=uuid.UUID(claims["sub"]),
                token_version=version,
                session_id=uuid.UUID(sid) if sid is not None else None,
                jti=str(claims["jti"]),
                expires_at=int(claims["exp"]),
                stored_kid=entry.kid if entry.stored else None,
            )
            return access, entry.kid
        except jwt.ExpiredSignatureError:
            raise InvalidToken("The access token has expired") from None
        except (jwt.PyJWTError, ValueError, TypeError, AttributeError):
            raise InvalidToken("The access token is invalid") from None


def new_opaque_token() -> str:
    """A refresh token: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def opaque_token_hash(token: str) -> bytes:
    """How refresh tokens are stored: only their SHA-256."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
