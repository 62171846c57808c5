"""Builds the mail service per request, on the request's session (so mail commits with its cause)."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from fastapi import Depends

from userapi.core.config import MailDelivery
from userapi.core.runtime import RuntimeDep
from userapi.db.session import SessionDep
from userapi.mail.composer import MailComposer
from userapi.mail.service import MailService


@lru_cache(maxsize=8)
def composer_for(mail_from: str, product_name: str) -> MailComposer:
    """One composer per configuration and process: it holds the compiled templates."""
    return MailComposer(mail_from, product_name)


async def get_mail_service(session: SessionDep, runtime: RuntimeDep) -> MailService:
    settings = runtime.settings
    off = settings.mail_mode() is MailDelivery.off
    return MailService.for_session(
        session, None if off else composer_for(settings.mail_from, settings.product_name)
    )


MailServiceDep = Annotated[MailService, Depends(get_mail_service)]
