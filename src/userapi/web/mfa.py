"""The account's second factor (/account/mfa/...): TOTP on with a QR code, off, new recovery codes.

The same mfa service calls as the API routes under /api/v1/users/me/mfa; recovery codes are shown
once, on the page that answers the form (never in a redirect, a cookie or a log).
"""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from userapi.auth.dependencies import MfaServiceDep
from userapi.core.validation import LoginPassword, StorableText
from userapi.mfa.exceptions import MfaAlreadyEnabled, MfaNotEnrolled
from userapi.web import constants as c
from userapi.web.dependencies import AccountConsole, session_form
from userapi.web.exceptions import InvalidForm
from userapi.web.pages import PageRoute, answer_again, back_to, flash, redirect, render

router = APIRouter(prefix=c.ACCOUNT + "/mfa", route_class=PageRoute, include_in_schema=False)
Form_ = session_form(c.ACCOUNT)
Back = back_to(c.ACCOUNT)
CodeField = Annotated[StorableText, Form(min_length=1, max_length=16)]
PasswordField = Annotated[LoginPassword, Form()]
_QR_PREFIX = "data:image/svg+xml;base64,"


def _qr_data_uri(svg: str) -> str:
    # An <img> of a data: URI: the SVG cannot run script there, and the page's CSP allows data: images.
    return _QR_PREFIX + base64.b64encode(svg.encode()).decode()


@router.post("/totp", dependencies=[Back, Form_])
async def enrol(
    request: Request, console: AccountConsole, mfa: MfaServiceDep, current_password: PasswordField
) -> Response:
    """POST /api/v1/users/me/mfa/totp: a pending enrolment, its QR code and secret on the page."""
    enrolment = await mfa.enrol(console.principal.user, current_password, console.client)
    return render(
        request,
        "account/totp.html",
        console=console,
        area=c.ACCOUNT,
        secret=enrolment.secret,
        qr=_qr_data_uri(enrolment.qr_svg),
    )


@router.post("/totp/confirm", dependencies=[Back, Form_])
async def confirm(
    request: Request,
    console: AccountConsole,
    mfa: MfaServiceDep,
    code: CodeField,
    secret: Annotated[StorableText, Form(max_length=128)],
    qr: Annotated[StorableText, Form(max_length=65536)],
) -> Response:
    """POST /api/v1/users/me/mfa/totp/confirm: a first code turns TOTP on; the recovery codes are
    shown once. A wrong code shows the same QR code again (the enrolment stays pending)."""
    if not qr.startswith(_QR_PREFIX):
        raise InvalidForm("The enrolment form is damaged; start again")
    answer_again(
        request,
        "account/totp.html",
        unless=(MfaNotEnrolled, MfaAlreadyEnabled),
        console=console,
        area=c.ACCOUNT,
        secret=secret,
        qr=qr,
    )
    codes = await mfa.confirm(console.principal.user, code.strip(), console.client, console.session_id)
    return render(
        request, "account/recovery_codes.html", console=console, area=c.ACCOUNT, codes=codes, turned_on=True
    )


@router.post("/totp/off", dependencies=[Back, Form_])
async def disable(
    request: Request,
    console: AccountConsole,
    mfa: MfaServiceDep,
    current_password: PasswordField,
    code: CodeField,
) -> Response:
    """DELETE /api/v1/users/me/mfa/totp: off, recovery codes deleted, the other sessions end."""
    user = console.principal.user
    await mfa.disable(user, current_password, code.strip(), console.client, console.session_id)
    flash(request, "Two-step sign-in is off, and your other sessions have ended.")
    return redirect(request, c.ACCOUNT)


@router.post("/recovery-codes", dependencies=[Back, Form_])
async def regenerate(
    request: Request,
    console: AccountConsole,
    mfa: MfaServiceDep,
    current_password: PasswordField,
    code: CodeField,
) -> Response:
    """POST /api/v1/users/me/mfa/recovery-codes: a fresh set (the old stops working), shown once."""
    user = console.principal.user
    codes = await mfa.regenerate_recovery_codes(
        user, current_password, code.strip(), console.client, console.session_id
    )
    return render(
        request, "account/recovery_codes.html", console=console, area=c.ACCOUNT, codes=codes, turned_on=False
    )
