"""The API as documented: response bodies of a full flow match /openapi.json, and none leaks a secret."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.fixtures.app import make_account
from tests.fixtures.helpers import API, USER_FIELDS

PASSWORD_1 = "Zebra-Quartz-Lantern-91"
PASSWORD_2 = "Violet-Harbor-Maple-27"
WRONG_GUESS = "Wrong-Guess-Attempt-55"
WEAK = "iloveyou"
SECRETS = (PASSWORD_1, PASSWORD_2, WRONG_GUESS, WEAK)

_JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "boolean": bool,
    "object": dict,
    "array": list,
    "number": (int, float),
}


def validate(schema: dict[str, Any], value: Any, spec: dict[str, Any], where: str = "$") -> None:
    """A structural check of `value` against an OpenAPI 3.1 schema: refs, anyOf, types, required
    and undocumented keys, enums and consts, uuid and date-time formats. Raises AssertionError."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        validate(spec["components"]["schemas"][name], value, spec, where)
        return
    if "anyOf" in schema:
        failures = []
        for option in schema["anyOf"]:
            try:
                validate(option, value, spec, where)
                return
            except AssertionError as exc:
                failures.append(str(exc))
        raise AssertionError(f"{where}: {value!r} matches no anyOf option: {failures}")
    for part in schema.get("allOf", []):
        validate(part, value, spec, where)
    if "const" in schema:
        assert value == schema["const"], f"{where}: {value!r} != const {schema['const']!r}"
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    kind = schema.get("type")
    if kind == "null":
        assert value is None, f"{where}: {value!r} is not null"
    elif kind == "integer":
        assert isinstance(value, int), f"{where}: {value!r} is not an integer"
        assert not isinstance(value, bool), f"{where}: {value!r} is not an integer"
    elif kind is not None:
        assert isinstance(value, _JSON_TYPES[kind]), f"{where}: {value!r} is not {kind}"
        if kind == "number":
            assert not isinstance(value, bool), f"{where}: {value!r} is not a number"
    if kind == "object":
        for key in schema.get("required", []):
            assert key in value, f"{where}: required {key!r} missing"
        properties = schema.get("properties")
        if properties is not None:
            if not schema.get("additionalProperties"):
                extra = set(value) - set(properties)
                assert not extra, f"{where}: undocumented keys {sorted(extra)}"
            for key, item in value.items():
                if key in properties:
                    validate(properties[key], item, spec, f"{where}.{key}")
    if kind == "array":
        for index, item in enumerate(value):
            validate(schema.get("items", {}), item, spec, f"{where}[{index}]")
    if kind == "string":
        if schema.get("format") == "uuid":
            uuid.UUID(value)
        elif schema.get("format") == "date-time":
            parsed = datetime.fromisoformat(value)
            assert parsed.tzinfo is not None, f"{where}: {value!r} has no time zone"


class Recorder:
    """Calls the API and keeps every (method, path template, response) for checking afterwards."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.calls: list[tuple[str, str, httpx.Response]] = []

    async def __call__(
        self, method: str, template: str, expected: int, token: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        path = template.format(**kwargs.pop("path", {}))
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.client.request(method, path, headers=headers, **kwargs)
        assert response.status_code == expected, (method, path, response.text)
        self.calls.append((method, template, response))
        return response


async def full_flow(client: httpx.AsyncClient, db_conn: AsyncConnection) -> tuple[Recorder, list[str]]:
    """Every endpoint, successes and the common failures, with known passwords."""
    call = Recorder(client)
    admin = await make_account(client, db_conn, "admin")
    # The only admin (rows committed by other tests must not count), so the last-admin 409 shows.
    await db_conn.execute(
        text("UPDATE users SET role = 'user' WHERE role = 'admin' AND id <> :id"), {"id": admin["id"]}
    )
    email = f"flow-{uuid.uuid4().hex[:10]}@example.com"

    user = (
        await call("POST", f"{API}/auth/register", 201, json={"email": email, "password": PASSWORD_1})
    ).json()
    await call("POST", f"{API}/auth/register", 409, json={"email": email, "password": PASSWORD_1})
    await call("POST", f"{API}/auth/register", 422, json={"email": "x" + email, "password": WEAK})
    await call("POST", f"{API}/auth/login", 401, json={"email": email, "password": WRONG_GUESS})
    await call("POST", f"{API}/auth/login", 422, json={"email": email, "password": PASSWORD_1, "extra": 1})
    tokens = (
        await call("POST", f"{API}/auth/login", 200, json={"email": email, "password": PASSWORD_1})
    ).json()
    grant = {"grant_type": "password", "username": email, "password": PASSWORD_1}
    await call("POST", f"{API}/auth/token", 200, data=grant)
    await call("POST", f"{API}/auth/token", 400, data={**grant, "password": WRONG_GUESS})
    access = tokens["access_token"]

    await call("GET", f"{API}/users/me", 200, access)
    await call("GET", f"{API}/users/me", 401)
    await call("PATCH", f"{API}/users/me", 200, access, json={"full_name": "Flow User"})
    await call("PATCH", f"{API}/users/me", 422, access, json={"role": "admin"})
    refreshed = (
        await call("POST", f"{API}/auth/refresh", 200, json={"refresh_token": tokens["refresh_token"]})
    ).json()
    access = refreshed["access_token"]
    await call("GET", f"{API}/auth/sessions", 200, access)
    await call("GET", f"{API}/users", 403, access)
    await call(
        "POST",
        f"{API}/users/me/password",
        403,
        access,
        json={"current_password": WRONG_GUESS, "new_password": PASSWORD_2},
    )
    await call(
        "POST",
        f"{API}/users/me/password",
        422,
        access,
        json={"current_password": PASSWORD_1, "new_password": WEAK},
    )
    await call(
        "POST",
        f"{API}/users/me/password",
        204,
        access,
        json={"current_password": PASSWORD_1, "new_password": PASSWORD_2},
    )
    tokens = (
        await call("POST", f"{API}/auth/login", 200, json={"email": email, "password": PASSWORD_2})
    ).json()

    boss = admin["tokens"]["access_token"]
    ids = {"user_id": user["id"]}
    await call("GET", f"{API}/users", 200, boss, params={"limit": 2})
    await call("GET", f"{API}/users", 200, boss, params={"email": "flow-"})
    await call("GET", f"{API}/users", 422, boss, params={"cursor": "abc"})
    await call(
        "PATCH", f"{API}/users/{{user_id}}", 409, boss, path={"user_id": admin["id"]}, json={"role": "user"}
    )
    created = (
        await call(
            "POST",
            f"{API}/users",
            201,
            boss,
            json={"email": "made-" + email, "password": PASSWORD_1, "role": "admin"},
        )
    ).json()
    await call("GET", f"{API}/users/{{user_id}}", 200, boss, path=ids)
    await call("GET", f"{API}/users/{{user_id}}", 404, boss, path={"user_id": uuid.uuid4()})
    await call("PATCH", f"{API}/users/{{user_id}}", 200, boss, path=ids, json={"full_name": "Renamed"})
    await call("GET", f"{API}/audit-events", 200, boss)
    await call("DELETE", f"{API}/users/{{user_id}}/sessions", 204, boss, path=ids)
    await call("DELETE", f"{API}/users/{{user_id}}", 204, boss, path={"user_id": created["id"]})

    # Roles.
    role = {"name": f"flow-{uuid.uuid4().hex[:6]}"}
    await call("GET", f"{API}/permissions", 200, boss)
    await call("GET", f"{API}/roles", 200, boss)
    await call("POST", f"{API}/roles", 201, boss, json={**role, "permissions": ["users:read"]})
    await call("POST", f"{API}/roles", 409, boss, json=role)
    await call("POST", f"{API}/roles", 422, boss, json={"name": "Bad Name"})
    await call("GET", f"{API}/roles/{{name}}", 200, boss, path=role)
    await call("PATCH", f"{API}/roles/{{name}}", 200, boss, path=role, json={"description": "Flow"})
    await call("PATCH", f"{API}/roles/{{name}}", 409, boss, path={"name": "admin"}, json={"description": "x"})
    await call("PATCH", f"{API}/users/{{user_id}}", 200, boss, path=ids, json={"role": role["name"]})
    await call("DELETE", f"{API}/roles/{{name}}", 409, boss, path=role)
    await call("PATCH", f"{API}/users/{{user_id}}", 422, boss, path=ids, json={"role": "no-such-role"})
    await call("PATCH", f"{API}/users/{{user_id}}", 200, boss, path=ids, json={"role": "user"})
    await call("DELETE", f"{API}/roles/{{name}}", 204, boss, path=role)
    await call("GET", f"{API}/roles/{{name}}", 404, boss, path=role)
    await call("POST", f"{API}/auth/logout", 204, json={"refresh_token": tokens["refresh_token"]})
    await call("GET", "/health/live", 200)

    hashes = list(
        (
            await db_conn.execute(
                text("SELECT password_hash FROM users WHERE id IN (:a, :b)"),
                {"a": user["id"], "b": admin["id"]},
            )
        ).scalars()
    )
    return call, hashes


@pytest.fixture
async def spec(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    return dict(response.json())


async def test_responses_of_a_full_flow_match_the_spec(
    client: httpx.AsyncClient, db_conn: AsyncConnection, spec: dict[str, Any]
) -> None:
    call, _ = await full_flow(client, db_conn)
    checked = set()
    for method, template, response in call.calls:
        operation = spec["paths"][template][method.lower()]
        status = str(response.status_code)
        media_type = response.headers.get("content-type", "").split(";")[0]
        if response.status_code >= 400:
            # Errors are problem documents (the spec does not describe their body).
            assert media_type == "application/problem+json", (method, template, status)
            body = response.json()
            assert {"type", "title", "status", "detail", "code"} <= set(body)
            assert body["status"] == response.status_code
            continue
        assert status in operation["responses"], f"{method} {template} answered an undocumented {status}"
        documented = operation["responses"][status].get("content", {})
        if response.status_code == 204:
            assert response.content == b""
            assert not documented
            continue
        assert media_type in documented, (method, template, media_type, list(documented))
        validate(documented[media_type]["schema"], response.json(), spec, f"{method} {template} {status}")
        checked.add((method, template))
    assert len(checked) >= 18, sorted(checked)


async def test_no_response_contains_a_password_or_a_hash(
    client: httpx.AsyncClient, db_conn: AsyncConnection
) -> None:
    call, hashes = await full_flow(client, db_conn)
    assert len(hashes) == 2
    assert all(h.startswith("$2b$") for h in hashes)
    for method, template, response in call.calls:
        text_ = response.text + " ".join(f"{k}: {v}" for k, v in response.headers.items())
        assert "$2b$" not in text_, (method, template)
        assert "password_hash" not in text_, (method, template)
        for value in (*SECRETS, *hashes):
            assert value not in text_, (method, template, value)


def test_user_schemas_document_no_secret(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    assert set(schemas["UserRead"]["properties"]) == USER_FIELDS
    assert schemas["UserPage"]["properties"]["items"]["items"] == {"$ref": "#/components/schemas/UserRead"}
    for name in ("UserRead", "UserPage", "TokenPair", "SessionRead", "AuditEventRead", "RoleRead"):
        assert "password" not in str(schemas[name]).lower(), name


def test_the_validator_rejects_bodies_that_break_the_schema(spec: dict[str, Any]) -> None:
    user_read = {"$ref": "#/components/schemas/UserRead"}
    good = {
        "id": str(uuid.uuid4()),
        "email": "a@example.com",
        "full_name": None,
        "role": "user",
        "is_active": True,
        "email_verified_at": None,
        "mfa_enabled": False,
        "created_at": "2024-05-01T12:00:00+00:00",
        "updated_at": "2024-05-01T12:00:00+00:00",
    }
    validate(user_read, good, spec)
    broken = [
        {k: v for k, v in good.items() if k != "email"},
        {**good, "password_hash": "$2b$04$x"},
        {**good, "role": 5},
        {**good, "role": None},
        {**good, "is_active": "yes"},
        {**good, "full_name": 5},
        {**good, "id": "not-a-uuid"},
        {**good, "created_at": "2024-05-01T12:00:00"},
        {**good, "email_verified_at": "yesterday"},
        {**good, "mfa_enabled": "no"},
    ]
    for body in broken:
        with pytest.raises((AssertionError, ValueError)):
            validate(user_read, body, spec)
    with pytest.raises(AssertionError):
        validate(
            {"$ref": "#/components/schemas/TokenPair"}, {"access_token": "a", "refresh_token": "b"}, spec
        )
    with pytest.raises(AssertionError):
        validate({"$ref": "#/components/schemas/UserPage"}, {"items": [good, {**good, "role": 1}]}, spec)


def test_roles_are_data_and_permissions_the_catalogue_in_the_spec(spec: dict[str, Any]) -> None:
    from userapi.roles.constants import Permission

    schemas = spec["components"]["schemas"]
    # A role is any role's name (no enum of roles: they are rows), a permission one of the catalogue.
    assert schemas["UserRead"]["properties"]["role"]["type"] == "string"
    assert "enum" not in schemas["UserRead"]["properties"]["role"]
    assert schemas["Permission"]["enum"] == [p.value for p in Permission]
    assert schemas["RoleCreate"]["properties"]["name"]["pattern"] == "^[a-z][a-z0-9_-]{1,62}$"
    operation = spec["paths"]["/api/v1/roles/{name}"]["delete"]
    assert {"204", "401", "403", "404", "409", "422"} <= set(operation["responses"])
