"""Builds the mail service per request, on the request's session (so mail commits with its cause)."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from fastapi import Depends

from userapi.core.config import MailDelivery
from userapi.core.crypto import AtRestCipher
from userapi.core.runtime import RuntimeDep
from userapi.db.session import SessionDep
from userapi.mail.composer import OUTBOX_PURPOSE, MailComposer
from userapi.mail.service import MailService


@lru_cache(maxsize=8)
def composer_for(mail_from: str, product_name: str, key_secret: str) -> MailComposer:
    """One composer per configuration and process: it holds the compiled templates and the cipher."""
    return MailComposer(mail_from, product_name, AtRestCipher(key_secret.encode(), OUTBOX_PURPOSE))


async def get_mail_service(session: SessionDep, runtime: RuntimeDep) -> MailService:
    settings = runtime.settings
    if settings.mail_mode() is MailDelivery.off:
        return MailService.for_session(session, None)
    secret = settings.key_encryption_secret.get_secret_value()
    return MailService.for_session(session, composer_for(settings.mail_from, settings.product_name, secret))


MailServiceDep = Annotated[MailService, Depends(get_mail_service)]
