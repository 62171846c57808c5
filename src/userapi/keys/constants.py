"""Names and fixed numbers of the signing-keys domain: algorithms, key states, purposes, lock keys."""

from __future__ import annotations

import enum


class StoredKeyAlgorithm(enum.StrEnum):
    """Algorithms a stored key may use (RFC 7518 section 3.1; EdDSA: RFC 8037 with Ed25519)."""

    EdDSA = "EdDSA"
    ES256 = "ES256"
    RS256 = "RS256"


ASYMMETRIC_ALGORITHMS = tuple(a.value for a in StoredKeyAlgorithm)
# RSA modulus size: 2048 bits is NIST SP 800-57's minimum through 2030 and the cheapest to verify.
RSA_KEY_BITS = 2048
# The at-rest cipher's purpose label (HKDF info) for private signing keys; the row's kid is the
# associated data, so a sealed key copied onto another row does not open.
SEALED_KEY_PURPOSE = "signing-key"
# Serialises key creation across processes and hosts (pg_advisory_xact_lock), so replicas
# starting together create one first key, and two rotations never interleave.
KEYS_LOCK_KEY = 0x75736B657973  # "uskeys"
# Extra margin before a superseded key is retired, beyond the access-token lifetime and the
# key-set refresh interval: clock skew between hosts.
RETIRE_LEEWAY_SECONDS = 60


class KeyState(enum.StrEnum):
    """Where a key is in its life; derived from its timestamps at a given time, never stored."""

    pending = "pending"  # published in the JWKS, not signing yet (verifiers' caches catch up)
    active = "active"  # signs new tokens (the newest activated, unretired key)
    previous = "previous"  # superseded: still published and accepted until its tokens expired
    retired = "retired"  # neither published nor accepted; its private key is destroyed
