"""The rules of the audit trail: `record` (the one way any domain writes an event) and the listing."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from userapi.audit.constants import EventType
from userapi.audit.models import AuthEvent
from userapi.audit.repository import AuditRepository
from userapi.core.client import ClientInfo
from userapi.core.metrics import AUTH_EVENTS, LOGINS, REFRESH_REUSE
from userapi.core.pagination import decode_cursor, key_bigint, next_page

_LOGIN_OUTCOMES = {
    EventType.login_succeeded: "success",
    EventType.login_failed: "failure",
    EventType.login_throttled: "throttled",
}


def _event_key(values: list[Any]) -> int:
    (event_id,) = values
    return key_bigint(event_id)


class AuditService:
    def __init__(self, repository: AuditRepository) -> None:
        self.repository = repository

    @classmethod
    def for_session(cls, session: AsyncSession) -> AuditService:
        """The service on a caller's session: the event commits (or not) with the caller's change."""
        return cls(AuditRepository(session))

    async def record(
        self,
        type_: EventType,
        *,
        user_id: uuid.UUID | None,
        client: ClientInfo | None = None,
        actor_id: uuid.UUID | None = None,
        **detail: object,
    ) -> None:
        """Append one event to the trail and count it in the metrics (OWASP ASVS V7.2).

        `user_id` is whom the event is about (None for a role), `actor_id` who caused it when that
        is someone else (an admin); `client` is None off the network (the CLI). `detail` holds
        JSON values (e.g. a role's `before` and `after`) and never a secret.
        """
        await self.repository.add(
            type_.value,
            user_id=user_id,
            actor_id=actor_id,
            ip=client.ip if client else None,
            user_agent=client.user_agent if client else None,
            detail=detail,
        )
        AUTH_EVENTS.labels(type_.value).inc()
        if outcome := _LOGIN_OUTCOMES.get(type_):
            LOGINS.labels(outcome).inc()
        elif type_ is EventType.refresh_reuse_detected:
            REFRESH_REUSE.inc()

    async def page(
        self, limit: int, cursor: str | None, user_id: uuid.UUID | None, type_: EventType | None
    ) -> tuple[list[AuthEvent], str | None]:
        """Events, newest first, and the cursor of the next page. Raises InvalidCursor."""
        before = decode_cursor(cursor, _event_key) if cursor else None
        rows = await self.repository.page(
            limit=limit + 1, before_id=before, user_id=user_id, type_=type_.value if type_ else None
        )
        return next_page(rows, limit, lambda event: [event.id])
