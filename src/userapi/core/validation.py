"""Reusable input types: storable text, normalised emails, acceptable passwords."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BeforeValidator, Field

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


def _normalise_email(value: str) -> str:
    _storable(value)
    try:
        # No DNS: deliverability is not ours to check, and lookups would make sign-up slow.
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    # Lower-cased whole, so the UNIQUE constraint is case-insensitive uniqueness.
    return result.normalized.lower()


@lru_cache(maxsize=1)
def _common_passwords() -> frozenset[str]:
    # zxcvbn's list of the 30,000 most common passwords (from real leaks), kept by its authors.
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"])


def _acceptable_password(value: str) -> str:
    _encodable(value)
    if value.lower() in _common_passwords():
        raise ValueError("is one of the most common passwords; choose another")
    return value


StorableText = Annotated[str, AfterValidator(_storable)]
Email = Annotated[str, BeforeValidator(_strip), Field(max_length=320), AfterValidator(_normalise_email)]
# Login takes any string: refusing a weak one there would tell an attacker something.
LoginPassword = Annotated[str, Field(min_length=1, max_length=PASSWORD_MAX_CHARS), AfterValidator(_encodable)]
NewPassword = Annotated[
    str,
    Field(min_length=PASSWORD_MIN_CHARS, max_length=PASSWORD_MAX_CHARS),
    AfterValidator(_acceptable_password),
]
FullName = Annotated[str, BeforeValidator(_strip), Field(max_length=200), AfterValidator(_storable)]
