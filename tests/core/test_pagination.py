"""One keyset pagination helper: an opaque cursor that round-trips, one error code for a bad one,
on every listing."""

from __future__ import annotations

import base64
import string
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.fixtures.app import Account
from tests.fixtures.helpers import API, assert_problem
from userapi.core.pagination import (
    InvalidCursor,
    decode_cursor,
    encode_cursor,
    key_bigint,
    key_datetime,
    key_uuid,
    next_page,
)

# Fixed, not random: parameter ids must be the same in every xdist worker.
SOME_ID = "5f3c932f-4127-462e-b4c5-ecf4fcbcfd89"


def _pair(values: list[Any]) -> tuple[datetime, uuid.UUID]:
    at, id_ = values
    return key_datetime(at), key_uuid(id_)


def test_a_cursor_round_trips_and_is_url_safe() -> None:
    at, id_ = datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC), uuid.uuid4()
    cursor = encode_cursor([at.isoformat(), str(id_)])
    assert set(cursor) <= set(string.ascii_letters + string.digits + "-_")
    assert decode_cursor(cursor, _pair) == (at, id_)
    assert decode_cursor(encode_cursor([42]), lambda v: key_bigint(v[0])) == 42


@pytest.mark.parametrize(
    "cursor",
    [
        "!!!",
        "x",
        base64.urlsafe_b64encode(b"not json").decode(),
        base64.urlsafe_b64encode(b'{"a": 1}').decode(),
        encode_cursor(["2026-01-01T00:00:00", SOME_ID]),  # naive timestamp
        encode_cursor(["2026-01-01T00:00:00+00:00", "not-a-uuid"]),
        encode_cursor(["0001-01-01T00:00:00+14:00", SOME_ID]),  # out of range in UTC
        encode_cursor([5, 6]),
        encode_cursor(["only one"]),
    ],
)
def test_a_forged_cursor_is_invalid_cursor(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor, _pair)


@pytest.mark.parametrize("value", [0, -1, 2**63, True, "7", 1.5])
def test_a_bigint_key_out_of_range_or_not_an_integer_is_refused(value: object) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(encode_cursor([value]), lambda v: key_bigint(v[0]))  # type: ignore[list-item]


def test_next_page_cuts_the_extra_row_and_points_after_the_last_kept() -> None:
    assert next_page([1, 2, 3], 3, lambda n: [n]) == ([1, 2, 3], None)
    rows, cursor = next_page([1, 2, 3, 4], 3, lambda n: [n])
    assert rows == [1, 2, 3]
    assert cursor == encode_cursor([3])


@pytest.mark.parametrize("path", ["/users", "/audit-events"])
async def test_every_listing_answers_a_bad_cursor_with_invalid_cursor(
    client: httpx.AsyncClient, admin: Account, path: str
) -> None:
    forged = base64.urlsafe_b64encode(b"-5").decode()
    response = await client.get(f"{API}{path}", params={"cursor": forged}, headers=admin.headers)
    body = assert_problem(response, 422, "invalid_cursor")
    assert body["detail"] == "The cursor is not one this service issued"


async def test_the_listings_share_the_page_schema_and_the_event_type_is_an_enum(
    client: httpx.AsyncClient,
) -> None:
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]
    for page in ("UserPage", "AuditEventPage"):
        assert set(schemas[page]["properties"]) == {"items", "next_cursor"}
    event_type = schemas["AuditEventRead"]["properties"]["type"]
    assert event_type == {"$ref": "#/components/schemas/EventType"}
    assert "login_failed" in schemas["EventType"]["enum"]
