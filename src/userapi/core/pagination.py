"""Keyset pagination for every listing: one opaque cursor codec, one error, one generic page schema."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

import orjson
from fastapi import Query
from pydantic import BaseModel, Field

from userapi.core.exceptions import InvalidInput

T = TypeVar("T")
K = TypeVar("K")
Row = TypeVar("Row")

# A cursor is short (a few key values); the bound keeps junk out of the decoder.
CURSOR_MAX_CHARS = 200
# PostgreSQL BIGINT: a forged key outside it would reach the driver and fail there as a 500.
_BIGINT_MAX = 2**63 - 1

CursorParam = Annotated[
    str | None,
    Query(max_length=CURSOR_MAX_CHARS, description="`next_cursor` of the previous page; omit for the first."),
]
LimitParam = Annotated[int, Query(ge=1, le=100, description="Items per page.")]


class InvalidCursor(InvalidInput):
    code = "invalid_cursor"
    title = "Invalid cursor"


class Page(BaseModel, Generic[T]):
    """One page of a listing, and the cursor of the next (null on the last page)."""

    items: list[T]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )


def encode_cursor(key: Sequence[str | int]) -> str:
    """The opaque cursor of a row's sort key: a JSON array, base64url without padding."""
    return base64.urlsafe_b64encode(orjson.dumps(list(key))).decode("ascii").rstrip("=")


def decode_cursor(cursor: str, parse: Callable[[list[Any]], K]) -> K:
    """The sort key of `cursor`, as `parse` builds it from the JSON array. Raises InvalidCursor.

    `parse` raises ValueError or TypeError for a key of the wrong shape. Base64 is decoded
    strictly: the lenient decoder drops unknown characters and so turns junk into data.
    """
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        values = orjson.loads(raw)
        if not isinstance(values, list):
            raise TypeError("a cursor is a JSON array")
        return parse(values)
    except (ValueError, TypeError, OverflowError, AttributeError, binascii.Error):
        raise InvalidCursor("The cursor is not one this service issued") from None


def next_page(
    rows: list[Row], limit: int, key: Callable[[Row], Sequence[str | int]]
) -> tuple[list[Row], str | None]:
    """Rows fetched with LIMIT `limit + 1`, cut to `limit`, and the cursor of the next page.

    The extra row tells whether a next page exists without a count query.
    """
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, encode_cursor(key(rows[-1]))
    return rows, None


def key_datetime(value: object) -> datetime:
    """A timezone-aware ISO 8601 timestamp, in UTC. Raises ValueError or TypeError."""
    if not isinstance(value, str):
        raise TypeError("timestamp must be a string")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("naive timestamp")
    # In UTC, as the driver sends it: out of range (year 1 at +14:00) fails here, not as a 500 there.
    return parsed.astimezone(UTC)


def key_uuid(value: object) -> uuid.UUID:
    """A UUID in its string form. Raises ValueError or TypeError."""
    if not isinstance(value, str):
        raise TypeError("uuid must be a string")  # uuid.UUID(5) raises AttributeError
    return uuid.UUID(value)


def key_bigint(value: object) -> int:
    """A positive BIGINT (1 .. 2**63-1), e.g. an identity column. Raises ValueError or TypeError."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("id must be an integer")
    if not 1 <= value <= _BIGINT_MAX:
        raise ValueError("id out of range")
    return value
