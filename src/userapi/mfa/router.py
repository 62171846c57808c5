"""HTTP routes of the mfa domain: the caller's TOTP enrolment and recovery codes, the admin reset."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, status

from userapi.auth.dependencies import CurrentPrincipal, CurrentUser, MfaServiceDep, Principal
from userapi.core.client import ClientDep
from userapi.core.config import API_PREFIX
from userapi.mfa.schemas import (
    CodeRequest,
    PasswordAndCodeRequest,
    RecoveryCodes,
    TotpEnrolment,
    TotpEnrolRequest,
)
from userapi.roles.constants import Permission
from userapi.roles.dependencies import require_permission
from userapi.roles.service import Actor
from userapi.users.dependencies import TargetUser

router = APIRouter(prefix=f"{API_PREFIX}/users", tags=["mfa"])
Resetter = Annotated[Principal, require_permission(Permission.mfa_reset)]
_password: dict[int | str, dict[str, Any]] = {
    403: {"description": "Wrong current password or code"},
    409: {"description": "No second factor to act on"},
    429: {"description": "Throttled"},
}


@router.post(
    "/me/mfa/totp",
    status_code=status.HTTP_201_CREATED,
    response_model=TotpEnrolment,
    summary="Start turning on TOTP",
    responses={**_password, 409: {"description": "TOTP is already on"}},
)
async def enrol_totp(
    body: TotpEnrolRequest, user: CurrentUser, mfa: MfaServiceDep, client: ClientDep
) -> TotpEnrolment:
    """Start a pending TOTP enrolment: scan the QR code, then confirm with a code."""
    enrolment = await mfa.enrol(user, body.current_password, client)
    return TotpEnrolment(secret=enrolment.secret, otpauth_uri=enrolment.otpauth_uri, qr_svg=enrolment.qr_svg)


@router.post(
    "/me/mfa/totp/confirm",
    response_model=RecoveryCodes,
    responses=_password,
    summary="Turn TOTP on with a first code",
)
async def confirm_totp(
    body: CodeRequest, current: CurrentPrincipal, mfa: MfaServiceDep, client: ClientDep
) -> RecoveryCodes:
    """Turn TOTP on; the 10 recovery codes are in this response only. The caller's other sessions
    end (they were opened with the password alone); this one stays."""
    codes = await mfa.confirm(current.user, body.code, client, current.claims.session_id)
    return RecoveryCodes(recovery_codes=codes)


@router.delete(
    "/me/mfa/totp", status_code=status.HTTP_204_NO_CONTENT, responses=_password, summary="Turn TOTP off"
)
async def disable_totp(
    body: PasswordAndCodeRequest, current: CurrentPrincipal, mfa: MfaServiceDep, client: ClientDep
) -> None:
    """Turn TOTP off; the recovery codes are deleted and the other sessions end."""
    await mfa.disable(current.user, body.current_password, body.code, client, current.claims.session_id)


@router.post(
    "/me/mfa/recovery-codes",
    response_model=RecoveryCodes,
    responses=_password,
    summary="Replace my recovery codes",
)
async def regenerate_recovery_codes(
    body: PasswordAndCodeRequest, current: CurrentPrincipal, mfa: MfaServiceDep, client: ClientDep
) -> RecoveryCodes:
    """A fresh set of 10 recovery codes; the old set stops working and the other sessions end."""
    codes = await mfa.regenerate_recovery_codes(
        current.user, body.current_password, body.code, client, current.claims.session_id
    )
    return RecoveryCodes(recovery_codes=codes)


@router.delete(
    "/{user_id}/mfa",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"description": "No such user"}},
    summary="Remove a user's second factor (mfa:reset)",
)
async def reset_mfa(caller: Resetter, target: TargetUser, mfa: MfaServiceDep, client: ClientDep) -> None:
    """Remove a user's second factor (support case): audited; every session of that user ends.
    Needs `mfa:reset` and every permission of the account's role."""
    await mfa.reset(Actor.signed_in(caller.user.id, caller.permissions, client), target)
