"""Response shapes every domain shares (not tied to one resource)."""

from __future__ import annotations

from pydantic import BaseModel


class Accepted(BaseModel):
    """202: the request was taken; what follows happens by mail."""

    detail: str
