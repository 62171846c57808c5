"""Who is at the browser: the console session (a userapi session in a signed cookie), its CSRF check,
and the guards of the console's pages.

The session is the API's own: sign-in opens it through the auth service, every request checks its
access token as the API does (account active, token version, session not ended), and an expired
access token is renewed with the refresh token (rotation and reuse detection included). Ending the
session anywhere (the API, the CLI, an admin, a password change) ends it here on the next request.
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from userapi.auth.dependencies import AuthServiceDep, Principal, authenticate
from userapi.core.client import ClientDep, ClientInfo
from userapi.core.exceptions import Unauthenticated
from userapi.core.runtime import RuntimeDep
from userapi.roles.service import Actor
from userapi.web import constants as c
from userapi.web.exceptions import CsrfRefused, NoConsoleAccess, SignInRequired
from userapi.web.pages import cookie_names, signer_for


@dataclass(frozen=True, slots=True)
class Console:
    """A signed-in browser: the caller as the API sees it, and the CSRF token of its forms."""

    principal: Principal
    csrf_token: str
    client: ClientInfo

    @property
    def session_id(self) -> uuid.UUID | None:
        """The userapi session (refresh-token family) this browser holds."""
        return self.principal.claims.session_id

    @property
    def actor(self) -> Actor:
        """The caller as the author of audited changes (its role's permissions, read on this request)."""
        return Actor.signed_in(self.principal.user.id, self.principal.permissions, self.client)

    def can(self, permission: str) -> bool:
        """Whether the caller's role grants `permission` now (what to show; `require` enforces)."""
        return permission in self.principal.permissions

    def require(self, permission: str) -> None:
        """What `require_permission` is to an API route. Raises MissingPermission."""
        self.actor.require({permission}, f"This needs the permission {permission}")


def session_cookie_value(runtime: RuntimeDep, access: str, refresh: str) -> str:
    """The signed cookie of a console session: its tokens and the time of this request."""
    return signer_for(runtime).dumps({"a": access, "r": refresh, "t": int(time.time())})


async def get_console(
    request: Request, runtime: RuntimeDep, auth: AuthServiceDep, client: ClientDep
) -> Console | None:
    """The signed-in browser, or None (no cookie, a forged one, idle too long, or the session ended)."""
    signer = signer_for(runtime)
    value = signer.loads(request.cookies.get(cookie_names(runtime.settings).session))
    if value is None:
        return None
    now = int(time.time())
    access, refresh, seen = value.get("a"), value.get("r"), value.get("t")
    if not isinstance(access, str) or not isinstance(refresh, str) or not isinstance(seen, int):
        return None
    if now - seen > runtime.settings.console_idle_timeout_seconds:
        # Idle too long: the session ends on the server too, not only in this browser (the cookie
        # could have been copied, and its refresh token would otherwise live on for days).
        await auth.logout(refresh, client)
        request.state.end_session = True
        return None
    try:
        principal = await authenticate(runtime, access)
    except Unauthenticated:
        # Expired (or ended): the refresh token decides, with the API's rules. A session ended
        # elsewhere has no live refresh token, so this is where the browser learns of it.
        try:
            pair = await auth.refresh(refresh, client)
            access, refresh = pair.access_token, pair.refresh_token
            principal = await authenticate(runtime, access)
        except Unauthenticated:
            request.state.end_session = True
            return None
    # Sliding idle timeout: every request moves the cookie's clock (and its Max-Age) on.
    request.state.session_cookie = session_cookie_value(runtime, access, refresh)
    console = Console(principal, signer.csrf_token(f"session:{principal.claims.session_id}"), client)
    request.state.console = console
    return console


MaybeConsole = Annotated[Console | None, Depends(get_console)]


async def _signed_in(console: MaybeConsole, area: str) -> Console:
    if console is None:
        raise SignInRequired(f"{area}/sign-in")
    return console


async def get_account_console(console: MaybeConsole) -> Console:
    """A signed-in browser on the account pages (any account). Raises SignInRequired."""
    return await _signed_in(console, c.ACCOUNT)


async def get_admin_console(console: MaybeConsole) -> Console:
    """A signed-in browser whose role grants at least one permission of the catalogue (the `user`
    role grants none). Each page and form then needs its own permission, as its API route does.
    Raises SignInRequired, NoConsoleAccess."""
    console = await _signed_in(console, c.ADMIN)
    if not console.principal.permissions:
        raise NoConsoleAccess(
            f"You are signed in as {console.principal.user.email}, and your role "
            f"({console.principal.user.role}) grants no administrative permission."
        )
    return console


AccountConsole = Annotated[Console, Depends(get_account_console)]
AdminConsole = Annotated[Console, Depends(get_admin_console)]


async def _csrf_field(request: Request) -> str | None:
    form = await request.form()
    values = form.getlist(c.CSRF_FIELD)
    return values[0] if len(values) == 1 and isinstance(values[0], str) else None


def _refused() -> CsrfRefused:
    return CsrfRefused("This form has expired or did not come from this site; reload the page and retry")


def session_form(area: str) -> Any:
    """Guard of a state-changing form of a signed-in browser: the form carries the synchronizer token
    of the session that rendered it. Raises SignInRequired (no session), CsrfRefused (403).

    SameSite=Strict cookies already keep other sites' forms from riding the session; the token is
    the defence that does not depend on the browser.
    """

    async def check(request: Request, console: MaybeConsole, runtime: RuntimeDep) -> None:
        if console is None:
            raise SignInRequired(f"{area}/sign-in")
        token = await _csrf_field(request)
        if not signer_for(runtime).csrf_valid(f"session:{console.session_id}", token):
            raise _refused()

    return Depends(check)


async def check_sign_in_form(request: Request, runtime: RuntimeDep) -> None:
    """Guard of the sign-in form (login CSRF): its token is bound to the browser's pre-session
    cookie. Raises CsrfRefused (403)."""
    pre = request.cookies.get(cookie_names(runtime.settings).pre_session)
    token = await _csrf_field(request)
    if not signer_for(runtime).csrf_valid(f"pre:{pre}" if pre else None, token):
        raise _refused()


SignInForm = Depends(check_sign_in_form)


def pre_session_token(request: Request, runtime: RuntimeDep) -> str:
    """The CSRF token of a sign-in form; a browser without a pre-session cookie gets one."""
    pre = request.cookies.get(cookie_names(runtime.settings).pre_session)
    if not pre or len(pre) > 64:
        pre = secrets.token_urlsafe(24)
        request.state.pre_session = pre
    return signer_for(runtime).csrf_token(f"pre:{pre}")
