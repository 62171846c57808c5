"""Encryption at rest: secrets kept in the database (signing keys, TOTP seeds), sealed with AES-GCM."""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import SecretStr

# Layout of a sealed value: version (1 byte) || nonce (12 bytes) || ciphertext || GCM tag (16 bytes).
# The version byte names the KEY_ENCRYPTION_SECRET generation that sealed it, so a later change can
# add a second secret (open with either, seal with the newest) without guessing which one fits.
KEY_VERSION = 1
NONCE_BYTES = 12  # 96 bits: the nonce size GCM is defined for (NIST SP 800-38D, section 5.2.1.1)
TAG_BYTES = 16
OVERHEAD_BYTES = 1 + NONCE_BYTES + TAG_BYTES
# Fixed and public: HKDF's salt separates this application's keys from any other use of the secret.
_HKDF_SALT = b"userapi/at-rest/v1"


class SealedDataError(Exception):
    """A sealed value cannot be opened: a different KEY_ENCRYPTION_SECRET, another record or purpose,
    or altered bytes. Deliberately one error: which of these it was cannot be told apart (AES-GCM)."""


class AtRestCipher:
    """Seals and opens small secrets for storage: AES-256-GCM under a key derived for one purpose.

    The 256-bit key is HKDF-SHA256 (RFC 5869) of `secret` with `purpose` as the info label, so
    signing keys and TOTP seeds never share a key. Every seal draws a fresh random 96-bit nonce
    (safe for far more than the 2**32 seals NIST SP 800-38D allows per key). The associated data
    binds a sealed value to its purpose and its record id: a value copied onto another row, or read
    for another purpose, does not open.

    `secret`: KEY_ENCRYPTION_SECRET (any length is accepted here; Settings requires 32 bytes or
    more outside development). `purpose`: a short ASCII label such as "signing-key".
    """

    def __init__(self, secret: SecretStr | bytes, purpose: str) -> None:
        raw = secret.get_secret_value().encode() if isinstance(secret, SecretStr) else secret
        if not raw:
            raise ValueError("KEY_ENCRYPTION_SECRET is empty")
        if not purpose or not purpose.isascii():
            raise ValueError("purpose must be a non-empty ASCII label")
        self.purpose = purpose
        self._version = KEY_VERSION
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=purpose.encode()).derive(raw)
        self._aead = AESGCM(key)

    def __repr__(self) -> str:  # never the key
        return f"AtRestCipher(purpose={self.purpose!r}, version={self._version})"

    def _associated_data(self, version: int, record_id: str) -> bytes:
        # Length-prefixed, so ("ab", "c") and ("a", "bc") cannot collide.
        purpose, record = self.purpose.encode(), record_id.encode("utf-8")
        return bytes([version]) + len(purpose).to_bytes(2, "big") + purpose + record

    def seal(self, plaintext: bytes, record_id: str) -> bytes:
        """Encrypt `plaintext` for the row `record_id`; returns len(plaintext) + 29 bytes."""
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = self._aead.encrypt(nonce, plaintext, self._associated_data(self._version, record_id))
        return bytes([self._version]) + nonce + ciphertext

    def open(self, sealed: bytes, record_id: str) -> bytes:
        """The plaintext of a value sealed for `record_id`. Raises SealedDataError."""
        if len(sealed) < OVERHEAD_BYTES:
            raise SealedDataError("the sealed value is truncated")
        version = sealed[0]
        if version != self._version:
            raise SealedDataError(f"the sealed value uses key version {version}, not {self._version}")
        nonce, ciphertext = sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, ciphertext, self._associated_data(version, record_id))
        except InvalidTag:
            raise SealedDataError(
                f"cannot open a stored {self.purpose} secret: KEY_ENCRYPTION_SECRET is not the one "
                "it was sealed with (or the stored value was altered)"
            ) from None
