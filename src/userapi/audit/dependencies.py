"""Builds the audit service per request, on the request's session."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from userapi.audit.service import AuditService
from userapi.db.session import SessionDep


async def get_audit_service(session: SessionDep) -> AuditService:
    return AuditService.for_session(session)


AuditServiceDep = Annotated[AuditService, Depends(get_audit_service)]
