"""The OpenAPI document, completed with the problem+json error responses every operation can give."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from userapi.core.exception_handlers import PROBLEM_MEDIA_TYPE

_PROBLEM = {
    "type": "object",
    "description": "An RFC 9457 problem document.",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string", "description": "Stable machine-readable error code."},
        "error": {
            "type": "string",
            "description": "The OAuth 2.0 token endpoint only: the RFC 6749 5.2 error code (equals `code`).",
        },
        "error_description": {
            "type": "string",
            "description": "The OAuth 2.0 token endpoint only: RFC 6749 5.2's text (equals `detail`).",
        },
        "errors": {
            "type": "array",
            "description": "Validation failures (422 only).",
            "items": {
                "type": "object",
                "required": ["loc", "msg", "type"],
                "properties": {
                    "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
}
_REF = {"$ref": "#/components/schemas/Problem"}
_COMMON = {
    "500": "Unexpected error",
    "503": "Database unavailable; retry shortly",
}
_PROTECTED = {"401": "Missing, invalid or expired access token", "403": "Signed in, but not allowed"}


def _problem_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_MEDIA_TYPE: {"schema": _REF}}}


def complete_error_responses(schema: dict[str, Any]) -> dict[str, Any]:
    """Every documented error carries the Problem schema; the errors any operation may give are listed."""
    schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = _PROBLEM
    for schemas_name in ("HTTPValidationError", "ValidationError"):
        schema["components"]["schemas"].pop(schemas_name, None)
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            extra = dict(_COMMON)
            if operation.get("security"):
                extra.update(_PROTECTED)
            if "requestBody" in operation:
                extra["400"] = "Malformed request body (e.g. not UTF-8)"
                extra["413"] = "Request body too large"
            # The OAuth 2.0 token endpoint answers malformed requests 400 invalid_request (RFC 6749 5.2).
            oauth = operation.get("x-oauth2-token-endpoint", False)
            if ("requestBody" in operation or operation.get("parameters")) and not oauth:
                extra["422"] = "Invalid input"
            if any(p.get("in") == "path" for p in operation.get("parameters", ())):
                extra["404"] = "Not found"
            for status, description in extra.items():
                responses.setdefault(status, {"description": description})
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": _REF}}
    return schema


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            app.openapi_schema = complete_error_responses(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
