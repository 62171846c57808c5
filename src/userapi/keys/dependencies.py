"""Builds the keys domain's objects for routes: the key documents over the process's key ring."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from userapi.core.runtime import RuntimeDep
from userapi.keys.documents import KeyDocuments


async def get_key_documents(runtime: RuntimeDep) -> KeyDocuments:
    """The JWKS and discovery documents of this process's key ring (cheap: holds two references)."""
    return KeyDocuments(runtime.tokens.keys, runtime.settings)


KeyDocumentsDep = Annotated[KeyDocuments, Depends(get_key_documents)]
