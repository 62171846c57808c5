"""Encryption at rest: AES-256-GCM under HKDF-derived keys, bound to purpose and record; its setting."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from userapi.core.config import DEVELOPMENT_KEY_ENCRYPTION_SECRET, Settings
from userapi.core.crypto import KEY_VERSION, NONCE_BYTES, OVERHEAD_BYTES, AtRestCipher, SealedDataError

SECRET = SecretStr("s" * 48)
PLAINTEXT = b"-----BEGIN PRIVATE KEY-----\nnot really one\n-----END PRIVATE KEY-----\n"


@pytest.fixture
def cipher() -> AtRestCipher:
    return AtRestCipher(SECRET, "signing-key")


def test_seal_then_open_gives_the_plaintext_back(cipher: AtRestCipher) -> None:
    sealed = cipher.seal(PLAINTEXT, "kid-1")
    assert cipher.open(sealed, "kid-1") == PLAINTEXT
    # A second cipher from the same secret and purpose (another process) opens it too.
    assert AtRestCipher(SecretStr("s" * 48), "signing-key").open(sealed, "kid-1") == PLAINTEXT


def test_sealed_value_layout_and_no_plaintext_inside(cipher: AtRestCipher) -> None:
    sealed = cipher.seal(PLAINTEXT, "kid-1")
    assert len(sealed) == len(PLAINTEXT) + OVERHEAD_BYTES
    assert sealed[0] == KEY_VERSION
    assert b"PRIVATE KEY" not in sealed
    assert cipher.open(cipher.seal(b"", "kid-1"), "kid-1") == b""


def test_each_seal_draws_a_new_nonce(cipher: AtRestCipher) -> None:
    nonces = {cipher.seal(PLAINTEXT, "kid-1")[1 : 1 + NONCE_BYTES] for _ in range(50)}
    assert len(nonces) == 50


def test_a_different_secret_cannot_open(cipher: AtRestCipher) -> None:
    sealed = cipher.seal(PLAINTEXT, "kid-1")
    with pytest.raises(SealedDataError, match="KEY_ENCRYPTION_SECRET is not the one"):
        AtRestCipher(SecretStr("t" * 48), "signing-key").open(sealed, "kid-1")


def test_another_record_or_purpose_cannot_open(cipher: AtRestCipher) -> None:
    sealed = cipher.seal(PLAINTEXT, "kid-1")
    with pytest.raises(SealedDataError):
        cipher.open(sealed, "kid-2")  # copied onto another row
    with pytest.raises(SealedDataError):
        AtRestCipher(SECRET, "totp-secret").open(sealed, "kid-1")  # read for another purpose


@pytest.mark.parametrize("position", [0, 1, NONCE_BYTES + 1, -1])
def test_any_altered_byte_is_refused(cipher: AtRestCipher, position: int) -> None:
    sealed = bytearray(cipher.seal(PLAINTEXT, "kid-1"))
    sealed[position] ^= 0x01
    with pytest.raises(SealedDataError):
        cipher.open(bytes(sealed), "kid-1")


@pytest.mark.parametrize("length", [0, 1, OVERHEAD_BYTES - 1])
def test_truncated_values_are_refused(cipher: AtRestCipher, length: int) -> None:
    with pytest.raises(SealedDataError, match="truncated"):
        cipher.open(cipher.seal(PLAINTEXT, "kid-1")[:length], "kid-1")


def test_the_key_never_shows(cipher: AtRestCipher) -> None:
    assert "s" * 10 not in repr(cipher)
    assert "signing-key" in repr(cipher)


def test_unusable_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        AtRestCipher(SecretStr(""), "signing-key")
    with pytest.raises(ValueError, match="purpose"):
        AtRestCipher(SECRET, "")


# --- the setting ------------------------------------------------------------------------------------


@pytest.mark.parametrize("environment", ["production", "test"])
@pytest.mark.parametrize("secret", ["", "short", "k" * 31, "é" * 15])
def test_key_encryption_secret_is_required_outside_development(environment: str, secret: str) -> None:
    with pytest.raises(ValidationError, match="KEY_ENCRYPTION_SECRET must be set to at least 32 bytes"):
        Settings(  # type: ignore[call-arg]
            _env_file=None, environment=environment, jwt_secret="j" * 32, key_encryption_secret=secret
        )


def test_key_encryption_secret_is_hidden_and_defaulted_in_development() -> None:
    strong = Settings(  # type: ignore[call-arg]
        _env_file=None, environment="production", jwt_secret="j" * 32, key_encryption_secret="q" * 32
    )
    assert strong.key_encryption_secret.get_secret_value() == "q" * 32
    assert "q" * 32 not in repr(strong)
    development = Settings(_env_file=None, environment="development")  # type: ignore[call-arg]
    assert development.key_encryption_secret.get_secret_value() == DEVELOPMENT_KEY_ENCRYPTION_SECRET
