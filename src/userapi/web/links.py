"""The pages that mailed links open (/account/reset-password, /verify-email, /confirm-email), and the
request for a reset link (/account/forgot-password): small forms over the recovery service.

Opening a link changes nothing: its page is a form whose button does (mail scanners that fetch
links would otherwise spend them). The token travels from the URL into the form; every page has
`Referrer-Policy: no-referrer`, and the access log records paths without their query.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from starlette.responses import Response

from userapi.auth.dependencies import RecoveryServiceDep
from userapi.core.client import ClientDep
from userapi.core.exceptions import InvalidInput, Throttled
from userapi.core.runtime import RuntimeDep
from userapi.core.validation import Email, NewPassword, StorableText
from userapi.web import constants as c
from userapi.web.dependencies import MaybeConsole, SignInForm, pre_session_token
from userapi.web.pages import PageRoute, back_to, flash, redirect, render

router = APIRouter(prefix=c.ACCOUNT, route_class=PageRoute, include_in_schema=False)

# The API's rule for a mailed token (auth.schemas.AccountTokenValue), as a form field.
TokenField = Annotated[StorableText, Form(min_length=1, max_length=512)]
TokenQuery = Annotated[StorableText, Query(max_length=512)]
# A form that is wrong (a refused password) or throttled goes back to its page, token and all; a
# spent or expired link gets a page of its own that says so.
FixableRefusals = (InvalidInput, Throttled)


def _link_page(request: Request, runtime: RuntimeDep, template: str, token: str, **context: Any) -> Response:
    return render(
        request,
        template,
        area=c.ACCOUNT,
        token=token,
        csrf_token=pre_session_token(request, runtime),
        **context,
    )


@router.get("/forgot-password")
async def forgot_form(request: Request, runtime: RuntimeDep) -> Response:
    """Ask for a password reset link."""
    return _link_page(request, runtime, "account/forgot.html", "")


@router.post("/forgot-password", dependencies=[back_to(f"{c.ACCOUNT}/forgot-password"), SignInForm])
async def forgot(
    request: Request, recovery: RecoveryServiceDep, client: ClientDep, email: Annotated[Email, Form()]
) -> Response:
    """POST /api/v1/auth/password/forgot: the same answer whether or not an account has the address."""
    await recovery.forgot_password(email, client)
    flash(request, f"If an account has the address {email}, a link to set a new password is on its way.")
    return redirect(request, f"{c.ACCOUNT}/sign-in")


@router.get("/reset-password")
async def reset_form(request: Request, runtime: RuntimeDep, token: TokenQuery = "") -> Response:
    """The form a reset link opens: a new password."""
    return _link_page(request, runtime, "account/reset.html", token)


@router.post(
    "/reset-password",
    dependencies=[back_to(f"{c.ACCOUNT}/reset-password?token={{token}}", only=FixableRefusals), SignInForm],
)
async def reset(
    request: Request,
    recovery: RecoveryServiceDep,
    client: ClientDep,
    token: TokenField,
    new_password: Annotated[NewPassword, Form()],
) -> Response:
    """POST /api/v1/auth/password/reset: the password is set and every session ends."""
    await recovery.reset_password(token, new_password, client)
    request.state.end_session = True
    flash(request, "Your new password is set and every session has ended: sign in with it.")
    return redirect(request, f"{c.ACCOUNT}/sign-in")


@router.get("/verify-email")
async def verify_form(request: Request, runtime: RuntimeDep, token: TokenQuery = "") -> Response:
    """The page a verification link opens: one button."""
    return _link_page(request, runtime, "account/verify.html", token)


@router.post(
    "/verify-email",
    dependencies=[back_to(f"{c.ACCOUNT}/verify-email?token={{token}}", only=(Throttled,)), SignInForm],
)
async def verify(
    request: Request, recovery: RecoveryServiceDep, client: ClientDep, token: TokenField
) -> Response:
    """POST /api/v1/auth/email/verify."""
    await recovery.verify_email(token, client)
    flash(request, "Your address is verified. Thank you.")
    return redirect(request, f"{c.ACCOUNT}/sign-in")


@router.get("/confirm-email")
async def confirm_form(request: Request, runtime: RuntimeDep, token: TokenQuery = "") -> Response:
    """The page an address-change link opens: one button."""
    return _link_page(request, runtime, "account/confirm.html", token)


@router.post(
    "/confirm-email",
    dependencies=[back_to(f"{c.ACCOUNT}/confirm-email?token={{token}}", only=(Throttled,)), SignInForm],
)
async def confirm(
    request: Request,
    recovery: RecoveryServiceDep,
    client: ClientDep,
    console: MaybeConsole,
    token: TokenField,
) -> Response:
    """POST /api/v1/auth/email/change/confirm: the address changes; every other session ends (this
    browser's stays when it is signed in to that account)."""
    await recovery.confirm_email_change(token, client, console.session_id if console else None)
    flash(request, "Your address is changed and verified.")
    return redirect(request, f"{c.ACCOUNT}/sign-in")
