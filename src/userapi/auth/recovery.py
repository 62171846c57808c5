"""Account recovery and verified addresses: password reset, address verification and address change."""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

from userapi.audit.constants import EventType
from userapi.audit.service import AuditService
from userapi.auth.account_tokens import AccountTokens
from userapi.auth.constants import TokenPurpose
from userapi.auth.exceptions import EmailAlreadyVerified, EmailUnchanged, WrongCurrentPassword
from userapi.auth.service import SessionRevoker
from userapi.core.canonical import InvalidEmail, refuse_lookalike_address
from userapi.core.client import ClientInfo
from userapi.core.config import Settings
from userapi.core.exceptions import Throttled
from userapi.core.security import PasswordHasher
from userapi.core.throttle import Throttle
from userapi.guard.service import SecretGuard
from userapi.mail.constants import MailTemplate
from userapi.mail.service import MailService
from userapi.users.exceptions import EmailTaken, InvalidEmailAddress
from userapi.users.models import User
from userapi.users.service import UserService


def _duration(seconds: int) -> str:
    """A lifetime as people say it: "30 minutes", "24 hours", "2 days" (TTLs are >= 60 s)."""
    for unit, size in (("day", 86400), ("hour", 3600)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    minutes = max(1, seconds // 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


class RecoveryService:
    """The mailed-link flows (OWASP Forgot Password Cheat Sheet, ASVS V2.5). Every mail joins the
    outbox in the request's transaction; every request and every use is an audit event."""

    def __init__(
        self,
        tokens: AccountTokens,
        users: UserService,
        sessions: SessionRevoker,
        mail: MailService,
        audit: AuditService,
        guard: SecretGuard,
        hasher: PasswordHasher,
        throttle: Throttle,
        settings: Settings,
    ) -> None:
        self.tokens = tokens
        self.users = users
        self.sessions = sessions
        self.mail = mail
        self.audit = audit
        self.guard = guard
        self.hasher = hasher
        self.throttle = throttle
        self.settings = settings

    # --- password reset ---------------------------------------------------------------------

    async def forgot_password(self, email: str, client: ClientInfo) -> None:
        """Mail a reset link to an active account with this address; the same work (and so about
        the same time) when there is none, which the caller cannot tell apart. Raises
        MailUnavailable, Throttled."""
        self.mail.require_available()
        await self._throttle_mail(email, client, None)
        user = await self.users.get_by_email(email)
        ttl = self.settings.password_reset_ttl_seconds
        values = {"expires_in": _duration(ttl)}
        if user is not None and user.is_active:
            raw = await self.tokens.issue(user.id, TokenPurpose.password_reset, email, ttl, client)
            await self.mail.enqueue(
                MailTemplate.password_reset, email, link=self._link("reset-password", raw), **values
            )
        else:
            raw = await self.tokens.issue_nothing(TokenPurpose.password_reset, email, ttl, client)
            await self.mail.enqueue_nothing(
                MailTemplate.password_reset, email, link=self._link("reset-password", raw), **values
            )
        await self.audit.record(
            EventType.password_reset_requested,
            user_id=user.id if user is not None else None,
            client=client,
            email=email,
            known="true" if user is not None and user.is_active else "false",
        )

    async def reset_password(self, presented: str, new_password: str, client: ClientInfo) -> None:
        """Set the password of the token's account and end every session. Raises Throttled,
        InvalidAccountToken."""
        spent = await self.tokens.spend(presented, TokenPurpose.password_reset, client)
        user = await self.users.get(spent.user_id)
        if not user.is_active or user.email != spent.email:
            raise await self.tokens.reject(
                spent, "inactive" if not user.is_active else "address_changed", client
            )
        await self.users.set_password(user, new_password)
        await self.users.end_all_sessions(user)
        await self.tokens.retire(user.id, TokenPurpose.password_reset)
        # Opening the link proved the mailbox is theirs.
        await self.users.mark_email_verified(user)
        await self.audit.record(EventType.password_reset_completed, user_id=user.id, client=client)

    async def password_changed(self, user: User) -> None:
        """A password set otherwise (POST /users/me/password): outstanding reset links stop working."""
        await self.tokens.retire(user.id, TokenPurpose.password_reset)

    # --- address verification ---------------------------------------------------------------

    async def send_verification(self, user: User, client: ClientInfo) -> None:
        """Mail a verification link to the account's address (sign-up); nothing when mail is off."""
        if not self.mail.available:
            return
        ttl = self.settings.email_verify_ttl_seconds
        raw = await self.tokens.issue(user.id, TokenPurpose.email_verification, user.email, ttl, client)
        await self.mail.enqueue(
            MailTemplate.email_verification,
            user.email,
            link=self._link("verify-email", raw),
            expires_in=_duration(ttl),
        )
        await self.audit.record(EventType.email_verification_sent, user_id=user.id, client=client)

    async def resend_verification(self, user: User, client: ClientInfo) -> None:
        """A new verification mail; the previous link stops working. Raises MailUnavailable,
        Throttled, EmailAlreadyVerified."""
        self.mail.require_available()
        if user.email_verified_at is not None:
            raise EmailAlreadyVerified("Your address is already verified")
        await self._throttle_mail(user.email, client, user)
        await self.send_verification(user, client)

    async def verify_email(self, presented: str, client: ClientInfo) -> None:
        """Mark the token's address verified. Raises Throttled, InvalidAccountToken."""
        spent = await self.tokens.spend(presented, TokenPurpose.email_verification, client)
        user = await self.users.get(spent.user_id)
        if user.email != spent.email:
            raise await self.tokens.reject(spent, "address_changed", client)
        await self.users.mark_email_verified(user)
        await self.tokens.retire(user.id, TokenPurpose.email_verification)
        await self.audit.record(EventType.email_verified, user_id=user.id, client=client, email=user.email)

    # --- address change ---------------------------------------------------------------------

    async def request_email_change(
        self, user: User, new_email: str, current_password: str, client: ClientInfo
    ) -> None:
        """Mail a confirmation link to `new_email` and a notice to the current address; nothing
        changes until the link is used. Raises MailUnavailable, Throttled, WrongCurrentPassword,
        EmailUnchanged, InvalidEmailAddress (a look-alike address), EmailTaken."""
        self.mail.require_available()

        # Through the guard, like the password change: counted first, failures audited.
        await self.guard.check_current_password(
            self.hasher,
            user.password_hash,
            current_password,
            user_id=user.id,
            client=client,
            refuse=WrongCurrentPassword("The current password is not correct"),
        )
        if new_email == user.email:
            raise EmailUnchanged("That is already your address")
        try:
            refuse_lookalike_address(new_email)
        except InvalidEmail as exc:
            raise InvalidEmailAddress(str(exc)) from None
        if await self.users.get_by_email(new_email) is not None:
            raise EmailTaken(f"An account with the email {new_email} already exists")
        # Counted only when mail is about to go out: a mistyped password or address sends none and
        # must not use up the hourly allowance (each try is already counted by the guard above).
        # The new address is counted as well, so no number of accounts can flood a stranger.
        await self._throttle_mail(user.email, client, user, also=new_email)
        ttl = self.settings.email_verify_ttl_seconds
        raw = await self.tokens.issue(user.id, TokenPurpose.email_change, new_email, ttl, client)
        await self.mail.enqueue(
            MailTemplate.email_change_confirmation,
            new_email,
            link=self._link("confirm-email", raw),
            expires_in=_duration(ttl),
            old_email=user.email,
        )
        await self.mail.enqueue(MailTemplate.email_change_notice, user.email, new_email=new_email)
        await self.audit.record(
            EventType.email_change_requested, user_id=user.id, client=client, new_email=new_email
        )

    async def confirm_email_change(
        self, presented: str, client: ClientInfo, current_session: uuid.UUID | None
    ) -> None:
        """Give the account the token's address (verified) and end every other session. Raises
        Throttled, InvalidAccountToken, EmailTaken (someone took the address meanwhile)."""
        spent = await self.tokens.spend(presented, TokenPurpose.email_change, client)
        user = await self.users.get(spent.user_id)
        if not user.is_active:
            raise await self.tokens.reject(spent, "inactive", client)
        old_email = user.email
        await self.users.change_email(user, spent.email)
        # Links mailed to the old address (or for it) must not outlive the change.
        await self.tokens.retire(user.id, *TokenPurpose)
        await self.sessions.revoke_other_sessions(user.id, current_session)
        await self.audit.record(
            EventType.email_changed,
            user_id=user.id,
            client=client,
            old_email=old_email,
            new_email=spent.email,
        )

    # --- internals ------------------------------------------------------------------------

    def _link(self, page: str, token: str) -> str:
        # From the configured base URL only, never from the request (a forged Host header would
        # otherwise mail the victim a link to the attacker's site with a valid token in it).
        return f"{self.settings.account_base_url}/{page}?{urlencode({'token': token})}"

    async def _throttle_mail(
        self, email: str, client: ClientInfo, user: User | None, also: str | None = None
    ) -> None:
        try:
            await self.throttle.hit_mail(email, client.ip)
            if also is not None:
                await self.throttle.hit_mail_address(also)
        except Throttled:
            await self.audit.record(
                EventType.account_mail_throttled,
                user_id=user.id if user else None,
                client=client,
                email=email,
            )
            raise
