"""Account commands of the CLI: create-admin (the seed script), reset-mfa and prune-sessions."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from userapi.cli._common import CliError, one_line_errors, settings_with_database, user_service, validated
from userapi.core.validation import Email, NewPassword

if TYPE_CHECKING:
    from userapi.auth.maintenance import SessionMaintenance

# Services are imported inside the commands: they pull in the web stack, which `userapi migrate`
# and friends should not pay for at start-up.


def _read_password() -> str:
    if sys.stdin.isatty():
        return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))
    # Piped in (scripts, CI): one line, without its newline.
    return sys.stdin.readline().rstrip("\r\n")


@one_line_errors
def create_admin(
    email: Annotated[str, typer.Option(help="Email of the admin to create or promote.")],
) -> None:
    """Create an admin account, or promote (and reactivate) an existing one. Idempotent."""
    from userapi.db.session import session_scope
    from userapi.roles.constants import BuiltInRole
    from userapi.roles.service import Actor

    # The canonical form (core.canonical), as every other entry point compares it.
    normalized = validated(Email, email, "email")
    settings = settings_with_database()

    async def run() -> str:
        async with session_scope(settings) as session:
            # The same service path as POST /api/v1/users and PATCH /api/v1/users/{id}: audited,
            # with the CLI as the actor.
            users = user_service(session, settings)
            actor = Actor.cli()
            admin = BuiltInRole.admin
            user = await users.get_by_email(normalized)
            if user is not None:
                if user.role == admin and user.is_active:
                    return f"{normalized} is already an admin"
                await users.admin_update(
                    actor, user, role=admin, is_active=True, fields={"role", "is_active"}
                )
                return f"{normalized} promoted to admin"
            password = validated(NewPassword, _read_password(), "password")
            await users.admin_create(
                actor, email=normalized, password=password, full_name=None, role=admin, is_active=True
            )
            return f"admin {normalized} created"

    typer.echo(asyncio.run(run()))


@one_line_errors
def prune_sessions(
    revoked_days: Annotated[
        int, typer.Option(min=0, help="Keep revoked tokens this many days (for forensics).")
    ] = 7,
    batch_size: Annotated[int, typer.Option(min=1, max=100_000)] = 5_000,
) -> None:
    """Delete expired and long-revoked refresh tokens and expired mailed tokens, in batches."""
    from userapi.auth.maintenance import SessionMaintenance
    from userapi.db.session import session_scope

    settings = settings_with_database()
    cutoff = datetime.now(UTC) - timedelta(days=revoked_days)

    async def batches(prune: Callable[[SessionMaintenance], Awaitable[int]]) -> int:
        total = 0
        while True:  # one short transaction per batch
            async with session_scope(settings) as session:
                deleted = await prune(SessionMaintenance.for_session(session))
            total += deleted
            if deleted < batch_size:
                return total

    async def run() -> tuple[int, int]:
        refresh = await batches(lambda m: m.prune_batch(revoked_before=cutoff, batch_size=batch_size))
        mailed = await batches(lambda m: m.prune_account_tokens_batch(batch_size=batch_size))
        return refresh, mailed

    refresh, mailed = asyncio.run(run())
    typer.echo(f"deleted {refresh} refresh tokens and {mailed} expired mailed tokens")


@one_line_errors
def reset_mfa(
    email: Annotated[str, typer.Option(help="Email of the account whose second factor to remove.")],
) -> None:
    """Remove an account's second factor (TOTP, recovery codes) for a locked-out operator; every
    session of the account ends. Audited with the CLI as the actor."""
    from userapi.audit.service import AuditService
    from userapi.auth.service import SessionRevoker
    from userapi.core.security import PasswordHasher
    from userapi.core.throttle import Throttle
    from userapi.db.session import session_scope
    from userapi.guard.service import SecretGuard
    from userapi.mfa.service import MfaService
    from userapi.roles.service import Actor
    from userapi.users.service import UserService

    normalized = validated(Email, email, "email")
    settings = settings_with_database()

    async def run() -> str:
        async with session_scope(settings) as session:
            sessions = SessionRevoker.for_session(session)
            audit = AuditService.for_session(session)
            hasher = PasswordHasher(settings.bcrypt_rounds)
            users = UserService.for_session(session, hasher, sessions, audit)
            guard = SecretGuard(Throttle(settings), audit)
            mfa = MfaService.for_session(session, users, sessions, audit, hasher, guard, settings, time.time)
            user = await users.get_by_email(normalized)
            if user is None:
                raise CliError(f"no account with the email {normalized}")
            if not await mfa.reset(Actor.cli(), user):
                return f"{normalized} has no second factor; nothing changed"
            return f"second factor of {normalized} removed; every session of the account ended"

    typer.echo(asyncio.run(run()))
