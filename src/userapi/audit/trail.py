"""AuditTrail: what a domain needs from the audit trail (recording one event), without the service."""

from __future__ import annotations

import uuid
from typing import Protocol

from userapi.audit.constants import EventType
from userapi.core.client import ClientInfo


class AuditTrail(Protocol):
    """Records one event (audit's AuditService implements it). Domains take this interface, so
    their services can be built with any recorder (tests, the CLI) and never on the audit service."""

    async def record(
        self,
        type_: EventType,
        *,
        user_id: uuid.UUID | None,
        client: ClientInfo | None = None,
        actor_id: uuid.UUID | None = None,
        **detail: object,
    ) -> None: ...
