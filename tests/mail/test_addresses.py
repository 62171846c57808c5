"""Verified addresses and address change, through the real SMTP server; REQUIRE_VERIFIED_EMAIL."""

from __future__ import annotations

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.fixtures.app import make_account
from tests.fixtures.helpers import API, PASSWORD, assert_problem, bearer, login, register, unique_email
from tests.fixtures.mail import Mailbox, MailClientFactory, link_token


async def me(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    return await client.get(f"{API}/users/me", headers=headers)


async def verify(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post(f"{API}/auth/email/verify", json={"token": token})


async def test_sign_up_mails_a_verification_link_that_verifies_once(
    mail_client: tuple[httpx.AsyncClient, Mailbox],
) -> None:
    client, mailbox = mail_client
    account = await make_account(client, full_name="Ada")
    assert account["email_verified_at"] is None
    received = await mailbox.one_to(account["email"])
    assert received.message["Subject"] == "Confirm your email address for userapi"
    assert account["email"] in received.text
    token = link_token(received, "verify-email")
    assert (await verify(client, token)).status_code == 204
    assert (await me(client, account.headers)).json()["email_verified_at"] is not None
    assert_problem(await verify(client, token), 400, "invalid_token")


async def test_resend_retires_the_previous_link_and_refuses_a_verified_address(
    mail_client: tuple[httpx.AsyncClient, Mailbox],
) -> None:
    client, mailbox = mail_client
    account = await make_account(client)
    first = link_token(await mailbox.one_to(account["email"]), "verify-email")
    resent = await client.post(f"{API}/auth/email/verify/resend", headers=account.headers)
    assert resent.status_code == 202, resent.text
    second = link_token(await mailbox.one_to(account["email"]), "verify-email")
    assert first != second
    assert_problem(await verify(client, first), 400, "invalid_token")
    assert (await verify(client, second)).status_code == 204
    again = await client.post(f"{API}/auth/email/verify/resend", headers=account.headers)
    assert_problem(again, 409, "email_already_verified")
    assert await mailbox.deliver() == []
    assert (await client.post(f"{API}/auth/email/verify/resend")).status_code == 401


async def test_email_change_confirms_at_the_new_address_and_notifies_the_old_one(
    mail_client: tuple[httpx.AsyncClient, Mailbox], db_conn: AsyncConnection
) -> None:
    client, mailbox = mail_client
    account = await make_account(client)
    other_session = await login(client, account["email"])
    await mailbox.deliver()
    new_email = unique_email("moved")
    body = {"new_email": f"  {new_email.upper()} ", "current_password": PASSWORD}
    response = await client.post(f"{API}/users/me/email", json=body, headers=account.headers)
    assert response.status_code == 202, response.text

    arrived = await mailbox.deliver()
    assert sorted(r.rcpt_tos[0] for r in arrived) == sorted([account["email"], new_email])
    notice = next(r for r in arrived if r.rcpt_tos == [account["email"]])
    confirmation = next(r for r in arrived if r.rcpt_tos == [new_email])
    assert new_email in notice.text
    assert "token=" not in notice.text  # the old address gets no link that could take the account
    assert account["email"] in confirmation.text
    token = link_token(confirmation, "confirm-email")
    assert (await me(client, account.headers)).json()["email"] == account["email"]  # not yet

    confirmed = await client.post(
        f"{API}/auth/email/change/confirm", json={"token": token}, headers=account.headers
    )
    assert confirmed.status_code == 204, confirmed.text
    mine = (await me(client, account.headers)).json()  # the confirming session stays
    assert mine["email"] == new_email
    assert mine["email_verified_at"] is not None
    assert (await me(client, bearer(other_session["access_token"]))).status_code == 401  # others end
    refreshed = await client.post(
        f"{API}/auth/refresh", json={"refresh_token": other_session["refresh_token"]}
    )
    assert refreshed.status_code == 401
    assert (
        await client.post(f"{API}/auth/login", json={"email": new_email, "password": PASSWORD})
    ).status_code == 200
    assert_problem(
        await client.post(f"{API}/auth/email/change/confirm", json={"token": token}), 400, "invalid_token"
    )
    types = (
        (
            await db_conn.execute(
                text("SELECT type FROM auth_events WHERE user_id = :u ORDER BY id"), {"u": account["id"]}
            )
        )
        .scalars()
        .all()
    )
    assert {"email_change_requested", "email_changed"} <= set(types)


async def test_email_change_refusals(
    mail_client: tuple[httpx.AsyncClient, Mailbox], db_conn: AsyncConnection
) -> None:
    client, mailbox = mail_client
    account = await make_account(client)
    taken = await make_account(client)
    await mailbox.deliver()
    url = f"{API}/users/me/email"
    wrong = await client.post(
        url, json={"new_email": unique_email(), "current_password": "not it"}, headers=account.headers
    )
    assert_problem(wrong, 403, "wrong_current_password")
    clash = await client.post(
        url, json={"new_email": taken["email"], "current_password": PASSWORD}, headers=account.headers
    )
    assert_problem(clash, 409, "email_taken")
    same = await client.post(
        url, json={"new_email": account["email"], "current_password": PASSWORD}, headers=account.headers
    )
    assert_problem(same, 422, "email_unchanged")
    lookalike = await client.post(
        url,
        json={"new_email": "\uff41dmin@example.com", "current_password": PASSWORD},
        headers=account.headers,
    )
    assert_problem(lookalike, 422, "invalid_email")
    assert_problem(
        await client.post(
            url, json={"new_email": "nope", "current_password": PASSWORD}, headers=account.headers
        ),
        422,
    )
    assert await mailbox.deliver() == []

    # Taken between the request and the confirmation: 409, and the account keeps its address.
    later = unique_email("later")
    ok = await client.post(
        url, json={"new_email": later, "current_password": PASSWORD}, headers=account.headers
    )
    assert ok.status_code == 202
    token = link_token(await mailbox.one_to(later), "confirm-email")
    await register(client, later)
    assert_problem(
        await client.post(f"{API}/auth/email/change/confirm", json={"token": token}), 409, "email_taken"
    )
    assert (await me(client, account.headers)).json()["email"] == account["email"]


async def test_refused_address_changes_do_not_use_up_the_mail_allowance(
    mail_client_factory: MailClientFactory,
) -> None:
    """Only a request that mails counts against the per-address mail limit: a mistyped password,
    a taken or unchanged address sends nothing (each try is still counted by the secret guard)."""
    client, mailbox = await mail_client_factory(rate_limit_mail_address="1/hour")
    account = await make_account(client)
    taken = await make_account(client)
    await mailbox.deliver()
    url = f"{API}/users/me/email"
    for body, status in (
        ({"new_email": unique_email(), "current_password": "not it"}, 403),
        ({"new_email": taken["email"], "current_password": PASSWORD}, 409),
        ({"new_email": account["email"], "current_password": PASSWORD}, 422),
    ):
        assert (await client.post(url, json=body, headers=account.headers)).status_code == status
    moved = unique_email("moved")
    ok = await client.post(
        url, json={"new_email": moved, "current_password": PASSWORD}, headers=account.headers
    )
    assert ok.status_code == 202, ok.text
    again = await client.post(
        url, json={"new_email": unique_email("again"), "current_password": PASSWORD}, headers=account.headers
    )
    assert_problem(again, 429)  # the allowance is real: the second mail of the hour is refused


async def test_an_address_change_retires_links_mailed_before_it(
    mail_client: tuple[httpx.AsyncClient, Mailbox],
) -> None:
    client, mailbox = mail_client
    account = await make_account(client)
    verification = link_token(await mailbox.one_to(account["email"]), "verify-email")
    await client.post(f"{API}/auth/password/forgot", json={"email": account["email"]})
    reset = link_token(await mailbox.one_to(account["email"]), "reset-password")
    new_email = unique_email("new")
    await client.post(
        f"{API}/users/me/email",
        json={"new_email": new_email, "current_password": PASSWORD},
        headers=account.headers,
    )
    change = link_token(await mailbox.one_to(new_email), "confirm-email")
    await mailbox.deliver()
    assert (await client.post(f"{API}/auth/email/change/confirm", json={"token": change})).status_code == 204
    assert_problem(await verify(client, verification), 400, "invalid_token")
    reset_body = {"token": reset, "new_password": "a brand new passphrase 42"}
    assert_problem(await client.post(f"{API}/auth/password/reset", json=reset_body), 400, "invalid_token")


async def test_require_verified_email_refuses_login_only_after_the_right_password(
    mail_client_factory: MailClientFactory,
) -> None:
    client, mailbox = await mail_client_factory(require_verified_email=True)
    email = unique_email()
    await register(client, email)
    token = link_token(await mailbox.one_to(email), "verify-email")
    wrong = await client.post(f"{API}/auth/login", json={"email": email, "password": "wrong password"})
    assert_problem(wrong, 401, "invalid_credentials")  # the same as for anyone: no hint
    right = await client.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD})
    assert_problem(right, 403, "email_not_verified")
    form = await client.post(
        f"{API}/auth/token", data={"grant_type": "password", "username": email, "password": PASSWORD}
    )
    assert_problem(form, 403, "email_not_verified")
    assert (await verify(client, token)).status_code == 204
    assert (
        await client.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD})
    ).status_code == 200


async def test_mail_off_answers_503_where_mail_is_needed_and_sign_up_still_works(
    mail_client_factory: MailClientFactory, db_conn: AsyncConnection
) -> None:
    client, mailbox = await mail_client_factory(mail_delivery="off")
    account = await make_account(client)
    assert_problem(
        await client.post(f"{API}/auth/password/forgot", json={"email": account["email"]}),
        503,
        "mail_unavailable",
    )
    assert_problem(
        await client.post(f"{API}/auth/password/forgot", json={"email": unique_email()}),
        503,
        "mail_unavailable",
    )
    assert_problem(
        await client.post(f"{API}/auth/email/verify/resend", headers=account.headers), 503, "mail_unavailable"
    )
    change = {"new_email": unique_email(), "current_password": PASSWORD}
    assert_problem(
        await client.post(f"{API}/users/me/email", json=change, headers=account.headers),
        503,
        "mail_unavailable",
    )
    assert (await db_conn.execute(text("SELECT count(*) FROM mail_outbox"))).scalar() == 0
    assert await mailbox.deliver() == []
