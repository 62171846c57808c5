"""HTTP routes of the audit domain: the audit-events listing (`audit:read`, required where api.py mounts it).

The permission is declared by api.py when it includes this router: audit imports no other domain,
and the guard belongs to roles.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from userapi.audit.constants import EventType
from userapi.audit.dependencies import AuditServiceDep
from userapi.audit.schemas import AuditEventPage
from userapi.core.config import API_PREFIX
from userapi.core.pagination import CursorParam, LimitParam

# Routers carry their full prefix, so a route knows its whole path template (metrics, logs).
router = APIRouter(prefix=API_PREFIX, tags=["audit"])


@router.get("/audit-events", response_model=AuditEventPage, summary="List audit events (admin)")
async def audit_events(
    audit: AuditServiceDep,
    limit: LimitParam = 20,
    cursor: CursorParam = None,
    user_id: Annotated[uuid.UUID | None, Query(description="Only events about this user.")] = None,
    type: Annotated[EventType | None, Query(description="Only events of this type.")] = None,
) -> dict[str, object]:
    """The audit trail of sign-ups, sign-ins (and failed ones), password changes, session ends and
    admin changes, newest first, a page at a time (keyset pagination: pass `next_cursor` as
    `cursor`). Each event has its time, type, the user it is about, the admin who acted (for admin
    changes), the client's address and user agent, and details. Admins only."""
    rows, next_cursor = await audit.page(limit, cursor, user_id, type)
    # The response model validates the ORM rows once (from attributes).
    return {"items": rows, "next_cursor": next_cursor}
