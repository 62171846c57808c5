"""Response schemas of the audit domain (the event type is an enum in the API, not a bare string)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from userapi.audit.constants import EventType
from userapi.core.pagination import Page


class AuditEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    type: EventType
    user_id: uuid.UUID | None
    actor_id: uuid.UUID | None
    ip: str | None
    user_agent: str | None
    detail: dict[str, Any]
    created_at: datetime


class AuditEventPage(Page[AuditEventRead]):
    pass
