"""Key material: generating key pairs, exporting public JWKs (PyJWT), RFC 7638 kids, PKCS#8 for sealing."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import get_default_algorithms

from userapi.keys.constants import ASYMMETRIC_ALGORITHMS, RSA_KEY_BITS

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey

# The members RFC 7638 section 3.2 hashes for each key type, and the only ones a public JWK may
# carry besides kid/alg/use (RFC 7518 section 6, RFC 8037 section 2). Private members (d, p, q,
# dp, dq, qi, oth, k) can never reach a published document: they are not on this list.
_PUBLIC_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}
_ALGORITHMS = get_default_algorithms()


def generate_private_key(algorithm: str) -> PrivateKey:
    """A new key pair for `algorithm` (EdDSA: Ed25519; ES256: P-256; RS256: RSA-2048). Raises ValueError."""
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    raise ValueError(f"no stored keys for {algorithm!r}; one of {', '.join(ASYMMETRIC_ALGORITHMS)}")


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url without padding): 43 characters, used as kid."""
    required = {name: jwk[name] for name in _PUBLIC_MEMBERS[jwk["kty"]]}
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode("ascii")


def public_jwk(private_key: PrivateKey, algorithm: str) -> dict[str, Any]:
    """The public half as a JWK with kid (thumbprint), alg and use=sig; public members only."""
    exported: dict[str, Any] = _ALGORITHMS[algorithm].to_jwk(private_key.public_key(), as_dict=True)
    jwk = {name: exported[name] for name in _PUBLIC_MEMBERS[exported["kty"]]}
    jwk |= {"kid": thumbprint(jwk), "alg": algorithm, "use": "sig"}
    return jwk


def public_key_from_jwk(jwk: dict[str, Any], algorithm: str) -> PublicKey:
    """Load a stored public JWK for verification. Raises ValueError (jwt.InvalidKeyError is one)."""
    members = {name: jwk[name] for name in _PUBLIC_MEMBERS[jwk["kty"]]}
    key: PublicKey = _ALGORITHMS[algorithm].from_jwk(members)
    return key


def private_key_to_der(private_key: PrivateKey) -> bytes:
    """PKCS#8 DER, unencrypted: only ever handed to the at-rest cipher, never stored as is."""
    return private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def private_key_from_der(der: bytes) -> PrivateKey:
    """Load an opened PKCS#8 DER private key. Raises ValueError."""
    key = serialization.load_der_private_key(der, password=None)
    if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError(f"unexpected key type {type(key).__name__}")
    return key
