"""HTTP routes of the audit domain: the audit-events listing (admins only, required where api.py mounts it).

The admin requirement is declared by api.py when it includes this router: audit imports no other
domain, and the guard belongs to auth.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from userapi.audit.constants import EventType
from userapi.audit.dependencies import AuditServiceDep
from userapi.audit.schemas import AuditEventPage
from userapi.core.config import API_PREFIX
from userapi.core.pagination import CursorParam, LimitParam

# Routers carry their full prefix, so a route knows its whole path template (metrics, logs).
router = APIRouter(prefix=API_PREFIX, tags=["audit"])


@router.get("/audit-events", response_model=AuditEventPage)
async def audit_events(
    audit: AuditServiceDep,
    limit: LimitParam = 20,
    cursor: CursorParam = None,
    user_id: uuid.UUID | None = None,
    type: EventType | None = None,
) -> dict[str, object]:
    rows, next_cursor = await audit.page(limit, cursor, user_id, type)
    # The response model validates the ORM rows once (from attributes).
    return {"items": rows, "next_cursor": next_cursor}
