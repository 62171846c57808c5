"""Public key documents: GET /.well-known/jwks.json (ETag, caching) and /.well-known/openid-configuration."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from userapi.keys.dependencies import KeyDocumentsDep
from userapi.keys.documents import JWKS_PATH
from userapi.keys.schemas import OpenIDConfiguration

router = APIRouter(tags=["keys"])


@router.get(
    JWKS_PATH,
    summary="The public signing keys (JWKS)",
    response_class=Response,
    responses={
        200: {
            "description": "RFC 7517 JWK Set of the public signing keys",
            "content": {"application/json": {}},
        },
        304: {"description": "Unchanged since the ETag sent in If-None-Match"},
    },
)
async def jwks(request: Request, documents: KeyDocumentsDep) -> Response:
    """The published public keys. Cacheable: a new key is published before it signs (max-age)."""
    body, headers, fresh = await documents.jwks(request.headers.get("if-none-match"))
    if fresh:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


@router.get(
    "/.well-known/openid-configuration",
    summary="OpenID discovery metadata",
    response_model=OpenIDConfiguration,
)
async def openid_configuration(documents: KeyDocumentsDep, response: Response) -> OpenIDConfiguration:
    """OpenID Connect discovery metadata: issuer, jwks_uri, token endpoint, algorithms, grant types."""
    document, cache_control = await documents.discovery()
    response.headers["Cache-Control"] = cache_control
    return document
