"""Builds the secret guard per request: the process's throttle and the request's audit service."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from userapi.audit.dependencies import AuditServiceDep
from userapi.core.runtime import RuntimeDep
from userapi.guard.service import SecretGuard


async def get_secret_guard(runtime: RuntimeDep, audit: AuditServiceDep) -> SecretGuard:
    # async def: FastAPI runs a plain def dependency in a worker thread.
    return SecretGuard(runtime.throttle, audit)


SecretGuardDep = Annotated[SecretGuard, Depends(get_secret_guard)]
