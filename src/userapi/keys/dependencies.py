"""Builds the keys domain's per-process objects for routes: the key documents."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from userapi.keys.documents import KeyDocuments


async def get_key_documents(request: Request) -> KeyDocuments:
    documents: KeyDocuments = request.app.state.key_documents
    return documents


KeyDocumentsDep = Annotated[KeyDocuments, Depends(get_key_documents)]
