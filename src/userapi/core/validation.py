"""Reusable input types: storable text, normalised emails, acceptable passwords."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field

from userapi.core.canonical import InvalidEmail, canonical_email, canonical_password

PASSWORD_MIN_CHARS = 8
# Far above any real passphrase; bounds the work one request can ask for.
PASSWORD_MAX_CHARS = 1024


def _storable(value: str) -> str:
    # PostgreSQL text cannot hold NUL, and a lone surrogate cannot be encoded as UTF-8: either
    # would fail deep in the driver as a 500, so refuse them here as invalid input.
    if "\x00" in value:
        raise ValueError("must not contain the NUL character")
    _encodable(value)
    return value


def _encodable(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


def _strip(value: object) -> object:
    return value.strip() if isinstance(value, str) else value


def _canonical_email(value: str) -> str:
    _storable(value)
    try:
        return canonical_email(value)
    except InvalidEmail as exc:
        raise ValueError(str(exc)) from None


@lru_cache(maxsize=1)
def _common_passwords() -> frozenset[str]:
    # zxcvbn's list of the 30,000 most common passwords (from real leaks), kept by its authors.
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"])


def _acceptable_password(value: str) -> str:
    _encodable(value)
    # Judged in the form that is hashed (NFKC): what counts is the password, not its encoding.
    canonical = canonical_password(value)
    if len(canonical) < PASSWORD_MIN_CHARS:
        raise ValueError(f"must have at least {PASSWORD_MIN_CHARS} characters")
    if canonical.lower() in _common_passwords():
        raise ValueError("is one of the most common passwords; choose another")
    return value


StorableText = Annotated[str, AfterValidator(_storable)]
# The canonical form (core.canonical), so every request body holding an address compares as stored.
Email = Annotated[str, BeforeValidator(_strip), Field(max_length=320), AfterValidator(_canonical_email)]
# Login takes any string: refusing a weak one there would tell an attacker something.
LoginPassword = Annotated[str, Field(min_length=1, max_length=PASSWORD_MAX_CHARS), AfterValidator(_encodable)]
NewPassword = Annotated[
    str,
    Field(min_length=PASSWORD_MIN_CHARS, max_length=PASSWORD_MAX_CHARS),
    AfterValidator(_acceptable_password),
]
FullName = Annotated[str, BeforeValidator(_strip), Field(max_length=200), AfterValidator(_storable)]
