"""/openapi.json says what each operation does: a written summary (not one FastAPI made from the
function's name), a description, a description for every parameter, and exactly one tag."""

from __future__ import annotations

import copy
import re
from typing import Any

import httpx
import pytest

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _function_name(operation_id: str, path: str, method: str) -> str:
    """The route function's name, from FastAPI's generated operationId (name + path + method)."""
    suffix = re.sub(r"\W", "_", path) + "_" + method
    return operation_id.removesuffix(suffix) if operation_id.endswith(suffix) else operation_id


def undocumented(spec: dict[str, Any]) -> list[str]:
    """Every documentation gap of the spec, one line each ("GET /path: what is missing")."""
    gaps = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            where = f"{method.upper()} {path}"
            summary = (operation.get("summary") or "").strip()
            name = _function_name(operation.get("operationId", ""), path, method)
            if not summary:
                gaps.append(f"{where}: no summary")
            elif summary == name.replace("_", " ").title():
                gaps.append(f"{where}: summary {summary!r} is made from the function name {name!r}")
            if not (operation.get("description") or "").strip():
                gaps.append(f"{where}: no description")
            for parameter in operation.get("parameters", []):
                if not (parameter.get("description") or "").strip():
                    name = f"{parameter['in']} {parameter['name']!r}"
                    gaps.append(f"{where}: parameter {name} has no description")
            tags = operation.get("tags", [])
            if len(tags) != 1:
                gaps.append(f"{where}: {len(tags)} tags {tags}, not one")
    return gaps


@pytest.fixture
async def spec(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    return dict(response.json())


def test_every_operation_says_what_it_does(spec: dict[str, Any]) -> None:
    assert len(spec["paths"]) >= 10  # the walk saw the API
    assert undocumented(spec) == []


def test_every_tag_is_described(spec: dict[str, Any]) -> None:
    used = {tag for item in spec["paths"].values() for op in item.values() for tag in op.get("tags", [])}
    described = {tag["name"]: tag.get("description", "") for tag in spec.get("tags", [])}
    assert used <= set(described), used - set(described)
    assert all(described[tag].strip() for tag in used)


def test_the_walk_catches_each_kind_of_gap(spec: dict[str, Any]) -> None:
    path, method = "/api/v1/users/me", "get"
    faults = {
        "summary made from the function name": lambda op: op.update(summary="Read Me"),
        "no summary": lambda op: op.pop("summary"),
        "no description": lambda op: op.update(description=" "),
        "parameter without description": lambda op: op.setdefault("parameters", []).append(
            {"name": "limit", "in": "query", "schema": {"type": "integer"}}
        ),
        "two tags": lambda op: op.update(tags=["users", "auth"]),
        "no tag": lambda op: op.pop("tags"),
    }
    for fault, apply in faults.items():
        broken = copy.deepcopy(spec)
        operation = broken["paths"][path][method]
        operation["operationId"] = "read_me_api_v1_users_me_get"
        apply(operation)
        gaps = undocumented(broken)
        assert len(gaps) == 1, (fault, gaps)
        assert gaps[0].startswith(f"GET {path}: "), (fault, gaps)
