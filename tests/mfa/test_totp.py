"""TOTP through real HTTP: enrolment, step-up login, drift and replay, recovery codes, the mfa_token's
limits, the OAuth2 form, turning it off, regenerating codes, the admin reset, hostile input."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.fixtures.app import Account, make_account
from tests.fixtures.helpers import API, assert_problem, bearer, login
from tests.mfa.conftest import FakeClock, MfaAccount, code_at, enable_totp, start_login
from userapi.roles.constants import BuiltInRole


def claims_of(access_token: str) -> dict[str, Any]:
    payload = access_token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


async def verify(client: httpx.AsyncClient, mfa_token: str, **method: str) -> httpx.Response:
    return await client.post(f"{API}/auth/mfa/verify", json={"mfa_token": mfa_token, **method})


async def test_enrol_shows_a_pending_factor_whose_secret_is_stored_sealed(
    client: httpx.AsyncClient, db_conn: AsyncConnection, user: Account, clock: FakeClock
) -> None:
    response = await client.post(
        f"{API}/users/me/mfa/totp", json={"current_password": user["password"]}, headers=user.headers
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"secret", "otpauth_uri", "qr_svg"}
    assert body["otpauth_uri"].startswith("otpauth://totp/userapi:")
    assert f"secret={body['secret']}" in body["otpauth_uri"]
    assert "issuer=userapi" in body["otpauth_uri"]
    assert body["qr_svg"].lstrip().startswith("<svg")
    assert body["qr_svg"].rstrip().endswith("</svg>")

    row = (
        await db_conn.execute(
            text("SELECT secret_sealed, confirmed_at FROM mfa_totp_factors WHERE user_id = :id"),
            {"id": user["id"]},
        )
    ).one()
    assert row.confirmed_at is None
    assert body["secret"].encode() not in bytes(row.secret_sealed)
    assert base64.b32decode(body["secret"]) not in bytes(row.secret_sealed)
    # Pending: not required at login yet.
    me = await client.get(f"{API}/users/me", headers=user.headers)
    assert me.json()["mfa_enabled"] is False
    login = await client.post(
        f"{API}/auth/login", json={"email": user["email"], "password": user["password"]}
    )
    assert login.status_code == 200


async def test_enrol_needs_the_current_password(client: httpx.AsyncClient, user: Account) -> None:
    response = await client.post(
        f"{API}/users/me/mfa/totp", json={"current_password": "not the password"}, headers=user.headers
    )
    assert_problem(response, 403, "wrong_current_password")


async def test_confirm_with_a_wrong_code_leaves_it_off(
    client: httpx.AsyncClient, user: Account, clock: FakeClock
) -> None:
    enrol = await client.post(
        f"{API}/users/me/mfa/totp", json={"current_password": user["password"]}, headers=user.headers
    )
    wrong = code_at(enrol.json()["secret"], clock.step + 5)
    response = await client.post(
        f"{API}/users/me/mfa/totp/confirm", json={"code": wrong}, headers=user.headers
    )
    assert_problem(response, 403, "wrong_code")
    assert (await client.get(f"{API}/users/me", headers=user.headers)).json()["mfa_enabled"] is False


async def test_login_then_verify_gives_tokens_that_work_and_carry_amr(
    client: httpx.AsyncClient, mfa_user: MfaAccount, clock: FakeClock
) -> None:
    assert len(mfa_user.recovery_codes) == 10
    assert len(set(mfa_user.recovery_codes)) == 10
    me = await client.get(f"{API}/users/me", headers=mfa_user.headers)
    assert me.json()["mfa_enabled"] is True

    challenge = await start_login(client, mfa_user)
    assert set(challenge) == {"mfa_token", "mfa_methods", "expires_in"}
    assert challenge["mfa_methods"] == ["totp", "recovery_code"]
    assert challenge["expires_in"] == 300

    response = await verify(client, challenge["mfa_token"], code=code_at(mfa_user.secret, clock.step))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    tokens = response.json()
    assert claims_of(tokens["access_token"])["amr"] == ["pwd", "otp"]
    assert (await client.get(f"{API}/users/me", headers=bearer(tokens["access_token"]))).status_code == 200

    # The session list shows how each session signed in; a refresh keeps it.
    refreshed = await client.post(f"{API}/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200
    assert claims_of(refreshed.json()["access_token"])["amr"] == ["pwd", "otp"]
    sessions = (await client.get(f"{API}/auth/sessions", headers=bearer(tokens["access_token"]))).json()
    by_current = {s["current"]: s["amr"] for s in sessions}
    assert by_current[True] == ["pwd", "otp"]
    assert by_current[False] == ["pwd"]  # the password-only session from before TOTP was on

    # The mfa_token is single-use.
    again = await verify(client, challenge["mfa_token"], code=code_at(mfa_user.secret, clock.step + 1))
    assert_problem(again, 401, "invalid_mfa_token")


async def test_password_only_tokens_carry_amr_pwd(client: httpx.AsyncClient, user: Account) -> None:
    assert claims_of(user["tokens"]["access_token"])["amr"] == ["pwd"]


async def test_the_same_code_twice_is_refused(
    client: httpx.AsyncClient, mfa_user: MfaAccount, clock: FakeClock
) -> None:
    code = code_at(mfa_user.secret, clock.step)
    first = await verify(client, (await start_login(client, mfa_user))["mfa_token"], code=code)
    assert first.status_code == 200
    second = await verify(client, (await start_login(client, mfa_user))["mfa_token"], code=code)
    assert_problem(second, 401, "invalid_code")


@pytest.mark.parametrize("offset", [-2, 2, 3, -3])
async def test_two_steps_off_is_refused(
    client: httpx.AsyncClient, mfa_user: MfaAccount, clock: FakeClock, offset: int
) -> None:
    clock.advance_steps(10)
    challenge = await start_login(client, mfa_user)
    response = await verify(
        client, challenge["mfa_token"], code=code_at(mfa_user.secret, clock.step + offset)
    )
    assert_problem(response, 401, "invalid_code")


async def test_previous_and_next_step_are_accepted_once_each(
    client: httpx.AsyncClient, mfa_user: MfaAccount, clock: FakeClock
) -> None:
    clock.advance_steps(10)
    previous = await verify(
        client,
        (await start_login(client, mfa_user))["mfa_token"],
        code=code_at(mfa_user.secret, clock.step - 1),
    )
    assert previous.status_code == 200, previous.text
    following = await verify(
        client,
        (await start_login(client, mfa_user))["mfa_token"],
        code=code_at(mfa_user.secret, clock.step + 1),
    )
    assert following.status_code == 200, following.text
    # The current step is older than the last one used: refused (a code never goes back in time).
    current = await verify(
        client, (await start_login(client, mfa_user))["mfa_token"], code=code_at(mfa_user.secret, clock.step)
    )
    assert_problem(current, 401, "invalid_code")


async def test_a_recovery_code_works_once_and_is_audited(
    client: httpx.AsyncClient, db_conn: AsyncConnection, mfa_user: MfaAccount
) -> None:
    code = mfa_user.recovery_codes[3]
    response = await verify(
        client, (await start_login(client, mfa_user))["mfa_token"], recovery_code=code.upper()
    )
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert claims_of(tokens["access_token"])["amr"] == ["pwd", "rc"]
    sessions = (await client.get(f"{API}/auth/sessions", headers=bearer(tokens["access_token"]))).json()
    assert [s["amr"] for s in sessions if s["current"]] == [["pwd", "rc"]]

    again = await verify(client, (await start_login(client, mfa_user))["mfa_token"], recovery_code=code)
    assert_problem(again, 401, "invalid_code")

    events = await db_conn.execute(
        text(
            "SELECT type, detail FROM auth_events WHERE user_id = :id"
            " AND (type LIKE 'mfa_%' OR type = 'secret_check_failed') ORDER BY id"
        ),
        {"id": mfa_user["id"]},
    )
    rows = [(t, d) for t, d in events]
    used = [d for t, d in rows if t == "mfa_recovery_code_used"]
    assert used == [{"method": "recovery_code", "codes_left": "9"}]
    assert ("secret_check_failed", {"kind": "recovery_code", "reason": "wrong_secret"}) in rows


async def test_five_wrong_codes_kill_the_mfa_token(
    client: httpx.AsyncClient, db_conn: AsyncConnection, mfa_user: MfaAccount, clock: FakeClock
) -> None:
    token = (await start_login(client, mfa_user))["mfa_token"]
    for left in range(4, -1, -1):
        response = await verify(client, token, code="000000" if left % 2 else "999999")
        body = assert_problem(response, 401, "invalid_code")
        assert body["attempts_left"] == left
    right = await verify(client, token, code=code_at(mfa_user.secret, clock.step))
    assert_problem(right, 401, "invalid_mfa_token")
    # A new sign-in is not affected.
    fresh = await verify(
        client, (await start_login(client, mfa_user))["mfa_token"], code=code_at(mfa_user.secret, clock.step)
    )
    assert fresh.status_code == 200
    failures = await db_conn.scalar(
        text(
            "SELECT count(*) FROM auth_events WHERE user_id = :id AND type = 'secret_check_failed'"
            " AND detail->>'kind' = 'one_time_code'"
        ),
        {"id": mfa_user["id"]},
    )
    assert failures == 5


async def test_an_expired_or_unknown_mfa_token_is_refused(
    client: httpx.AsyncClient, db_conn: AsyncConnection, mfa_user: MfaAccount, clock: FakeClock
) -> None:
    assert_problem(await verify(client, "no-such-token", code="123456"), 401, "invalid_mfa_token")
    token = (await start_login(client, mfa_user))["mfa_token"]
    await db_conn.execute(
        text("UPDATE mfa_challenges SET expires_at = now() - interval '1 second' WHERE user_id = :id"),
        {"id": mfa_user["id"]},
    )
    assert_problem(
        await verify(client, token, code=code_at(mfa_user.secret, clock.step)), 401, "invalid_mfa_token"
    )


async def test_a_password_change_kills_a_pending_mfa_token(
    client: httpx.AsyncClient, mfa_user: MfaAccount, clock: FakeClock
) -> None:
    token = (await start_login(client, mfa_user))["mfa_token"]
    changed = await client.post(
        f"{API}/users/me/password",
        json={"current_password": mfa_user["password"], "new_password": "a brand new passphrase"},
        headers=mfa_user.headers,
    )
    assert changed.status_code == 204
    assert_problem(
        await verify(client, token, code=code_at(mfa_user.secret, clock.step)), 401, "invalid_mfa_token"
    )


async def test_the_oauth2_form_refuses_an_mfa_account_with_invalid_grant(
    client: httpx.AsyncClient, mfa_user: MfaAccount
) -> None:
    response = await client.post(
        f"{API}/auth/token",
        data={"grant_type": "password", "username": mfa_user["email"], "password": mfa_user["password"]},
    )
    body = assert_problem(response, 400, "invalid_grant")
    assert body["error"] == "invalid_grant"
    assert "second factor" in body["error_description"]
    # A wrong password still says only that (the MFA status is not shown to a guesser).
    wrong = await client.post(
        f"{API}/auth/token",
        data={"grant_type": "password", "username": mfa_user["email"], "password": "nope nope"},
    )
    wrong_body = assert_problem(wrong, 400, "invalid_grant")
    assert "second factor" not in wrong_body["error_description"]


async def test_turning_totp_on_ends_the_other_sessions(
    client: httpx.AsyncClient, user: Account, clock: FakeClock
) -> None:
    """Sessions opened with the password alone end when the second factor goes on (the password
    may be what leaked); the session that turned it on stays."""
    elsewhere = await login(client, user["email"])
    stolen = {"Authorization": f"Bearer {elsewhere['access_token']}"}
    assert (await client.get(f"{API}/users/me", headers=stolen)).status_code == 200
    await enable_totp(client, user, clock)
    assert (await client.get(f"{API}/users/me", headers=stolen)).status_code == 401
    refreshed = await client.post(f"{API}/auth/refresh", json={"refresh_token": elsewhere["refresh_token"]})
    assert refreshed.status_code == 401
    assert (await client.get(f"{API}/users/me", headers=user.headers)).status_code == 200


async def test_disable_needs_password_and_code_and_ends_the_other_sessions(
    client: httpx.AsyncClient, db_conn: AsyncConnection, mfa_user: MfaAccount, clock: FakeClock
) -> None:
    other = (
        await verify(
            client,
            (await start_login(client, mfa_user))["mfa_token"],
            code=code_at(mfa_user.secret, clock.step),
        )
    ).json()
    clock.advance_steps(1)
    url = f"{API}/users/me/mfa/totp"
    wrong_password = await client.request(
        "DELETE",
        url,
        json={"current_password": "wrong password", "code": code_at(mfa_user.secret, clock.step)},
        headers=mfa_user.headers,
    )
    assert_problem(wrong_password, 403, "wrong_current_password")
    wrong_code = await client.request(
        "DELETE",
        url,
        json={"current_password": mfa_user["password"], "code": "000000"},
        headers=mfa_user.headers,
    )
    assert_problem(wrong_code, 403, "wrong_code")

    response = await client.request(
        "DELETE",
        url,
        json={"current_password": mfa_user["password"], "code": code_at(mfa_user.secret, clock.step)},
        headers=mfa_user.headers,
    )
    assert response.status_code == 204, response.text
    assert (await client.get(f"{API}/users/me", headers=mfa_user.headers)).json()["mfa_enabled"] is False
    assert (await client.get(f"{API}/users/me", headers=bearer(other["access_token"]))).status_code == 401
    codes = await db_conn.scalar(
        text("SELECT count(*) FROM mfa_recovery_codes WHERE user_id = :id"), {"id": mfa_user["id"]}
    )
    assert codes == 0
    login = await client.post(
        f"{API}/auth/login", json={"email": mfa_user["email"], "password": mfa_user["password"]}
    )
    assert login.status_code == 200


async def test_regenerated_recovery_codes_replace_the_old_set(
    client: httpx.AsyncClient, mfa_user: MfaAccount, clock: FakeClock
) -> None:
    other = (
        await verify(
            client,
            (await start_login(client, mfa_user))["mfa_token"],
            code=code_at(mfa_user.secret, clock.step),
        )
    ).json()
    clock.advance_steps(1)
    response = await client.post(
        f"{API}/users/me/mfa/recovery-codes",
        json={"current_password": mfa_user["password"], "code": code_at(mfa_user.secret, clock.step)},
        headers=mfa_user.headers,
    )
    assert response.status_code == 200, response.text
    fresh = response.json()["recovery_codes"]
    assert len(fresh) == 10
    assert not set(fresh) & set(mfa_user.recovery_codes)
    assert (await client.get(f"{API}/users/me", headers=bearer(other["access_token"]))).status_code == 401
    assert (await client.get(f"{API}/users/me", headers=mfa_user.headers)).status_code == 200

    old = await verify(
        client, (await start_login(client, mfa_user))["mfa_token"], recovery_code=mfa_user.recovery_codes[0]
    )
    assert_problem(old, 401, "invalid_code")
    new = await verify(client, (await start_login(client, mfa_user))["mfa_token"], recovery_code=fresh[0])
    assert new.status_code == 200


async def test_admin_reset_removes_the_factor_and_ends_every_session(
    client: httpx.AsyncClient, db_conn: AsyncConnection, mfa_user: MfaAccount
) -> None:
    admin = await make_account(client, db_conn, BuiltInRole.admin)
    denied = await client.delete(f"{API}/users/{mfa_user['id']}/mfa", headers=mfa_user.headers)
    assert_problem(denied, 403, "forbidden")

    response = await client.delete(f"{API}/users/{mfa_user['id']}/mfa", headers=admin.headers)
    assert response.status_code == 204, response.text
    assert (await client.get(f"{API}/users/me", headers=mfa_user.headers)).status_code == 401
    target = (await client.get(f"{API}/users/{mfa_user['id']}", headers=admin.headers)).json()
    assert target["mfa_enabled"] is False
    login = await client.post(
        f"{API}/auth/login", json={"email": mfa_user["email"], "password": mfa_user["password"]}
    )
    assert login.status_code == 200
    event = (
        await db_conn.execute(
            text("SELECT actor_id FROM auth_events WHERE user_id = :id AND type = 'mfa_reset'"),
            {"id": mfa_user["id"]},
        )
    ).one()
    assert str(event.actor_id) == admin["id"]


async def test_enrolling_twice_is_a_conflict(client: httpx.AsyncClient, mfa_user: MfaAccount) -> None:
    response = await client.post(
        f"{API}/users/me/mfa/totp", json={"current_password": mfa_user["password"]}, headers=mfa_user.headers
    )
    assert_problem(response, 409, "mfa_already_enabled")


@pytest.mark.parametrize(
    "body",
    [
        {"code": "123456"},
        {"mfa_token": "x"},
        {"mfa_token": "x", "code": "123456", "recovery_code": "abcd"},
        {"mfa_token": "x", "code": "12\u00003456"},
        {"mfa_token": "x", "recovery_code": "a" * 65},
        {"mfa_token": "x", "code": 123456},
        {"mfa_token": "x", "code": "123456", "extra": 1},
        {"mfa_token": "x" * 513, "code": "123456"},
    ],
)
async def test_hostile_verify_bodies_are_422(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    assert_problem(await client.post(f"{API}/auth/mfa/verify", json=body), 422)


@pytest.mark.parametrize("code", ["12\u00003456", "\ud800", "1" * 17])
async def test_hostile_codes_on_the_account_routes_are_422(
    client: httpx.AsyncClient, user: Account, code: str
) -> None:
    response = await client.post(
        f"{API}/users/me/mfa/totp/confirm",
        content=json.dumps({"code": code}).encode(),
        headers={**user.headers, "content-type": "application/json"},
    )
    assert_problem(response, 422)


async def test_no_secret_code_or_token_reaches_the_logs(
    client: httpx.AsyncClient, user: Account, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        account = await enable_totp(client, user, clock)
        challenge = await start_login(client, account)
        code = code_at(account.secret, clock.step)
        tokens = (await verify(client, challenge["mfa_token"], code=code)).json()
        await verify(
            client, (await start_login(client, account))["mfa_token"], recovery_code=account.recovery_codes[0]
        )
    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert caplog.records, "the flow logged nothing: the check would prove nothing"
    for secret in [
        account.secret,
        code,
        challenge["mfa_token"],
        tokens["access_token"],
        *account.recovery_codes,
    ]:
        assert secret not in logged
