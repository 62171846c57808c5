"""Throttling of the mail flows (per address, per client IP, per token submitter) and no token in logs."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.fixtures.app import make_account
from tests.fixtures.helpers import API, PASSWORD, assert_problem, unique_email
from tests.fixtures.mail import MailClientFactory, link_token


async def test_mail_requests_are_throttled_per_address_known_or_not(
    mail_client_factory: MailClientFactory, db_conn: AsyncConnection
) -> None:
    client, mailbox = await mail_client_factory(rate_limit_mail_address="2/minute")
    known = await make_account(client)
    await mailbox.deliver()
    for email in (known["email"], unique_email("nobody")):
        for _ in range(2):
            assert (
                await client.post(f"{API}/auth/password/forgot", json={"email": email})
            ).status_code == 202
        refused = await client.post(f"{API}/auth/password/forgot", json={"email": email})
        assert_problem(refused, 429, "too_many_requests")
        assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert len(await mailbox.deliver()) == 2  # only what was allowed went out
    # Resend and address change count against the account's address too.
    assert_problem(await client.post(f"{API}/auth/email/verify/resend", headers=known.headers), 429)
    change = {"new_email": unique_email(), "current_password": PASSWORD}
    assert_problem(await client.post(f"{API}/users/me/email", json=change, headers=known.headers), 429)
    throttled = (
        await db_conn.execute(text("SELECT count(*) FROM auth_events WHERE type = 'account_mail_throttled'"))
    ).scalar()
    assert throttled == 4


async def test_an_address_change_counts_against_the_new_address_too(
    mail_client_factory: MailClientFactory,
) -> None:
    client, _ = await mail_client_factory(rate_limit_mail_address="2/minute")
    target = unique_email("victim")
    for n in range(3):
        account = await make_account(client)  # a fresh account each time: only the target repeats
        change = {"new_email": target, "current_password": PASSWORD}
        response = await client.post(f"{API}/users/me/email", json=change, headers=account.headers)
        assert response.status_code == (202 if n < 2 else 429), response.text


async def test_mail_requests_are_throttled_per_client_ip(mail_client_factory: MailClientFactory) -> None:
    client, _ = await mail_client_factory(rate_limit_mail_ip="3/minute")
    for _ in range(3):
        ok = await client.post(f"{API}/auth/password/forgot", json={"email": unique_email()})
        assert ok.status_code == 202
    refused = await client.post(f"{API}/auth/password/forgot", json={"email": unique_email()})
    assert_problem(refused, 429)
    assert "retry-after" in refused.headers


async def test_token_submissions_are_throttled_per_client_ip_before_any_lookup(
    mail_client_factory: MailClientFactory,
) -> None:
    client, mailbox = await mail_client_factory(rate_limit_secret_ip="3/minute")
    account = await make_account(client)
    token = link_token(await mailbox.one_to(account["email"]), "verify-email")
    for guess in ("a" * 43, "b" * 43, "c" * 43):
        assert_problem(
            await client.post(f"{API}/auth/email/verify", json={"token": guess}), 400, "invalid_token"
        )
    # Even the right token waits now: guessing cannot go faster than the limit.
    refused = await client.post(f"{API}/auth/email/verify", json={"token": token})
    assert_problem(refused, 429)
    assert "retry-after" in refused.headers


async def test_no_token_reaches_a_log_line(
    mail_client_factory: MailClientFactory,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    client, mailbox = await mail_client_factory(access_log=True)
    account = await make_account(client)
    tokens = [link_token(await mailbox.one_to(account["email"]), "verify-email")]
    await client.post(f"{API}/auth/password/forgot", json={"email": account["email"]})
    tokens.append(link_token(await mailbox.one_to(account["email"]), "reset-password"))
    new_email = unique_email("moved")
    change = {"new_email": new_email, "current_password": PASSWORD}
    await client.post(f"{API}/users/me/email", json=change, headers=account.headers)
    arrived = await mailbox.deliver()
    tokens.append(link_token(next(r for r in arrived if r.rcpt_tos == [new_email]), "confirm-email"))
    # Use each (and misuse one), so failures and successes both get logged.
    await client.post(f"{API}/auth/email/verify", json={"token": tokens[0]})
    await client.post(f"{API}/auth/email/verify", json={"token": tokens[0]})
    await client.post(
        f"{API}/auth/password/reset", json={"token": tokens[1], "new_password": "new passphrase 77"}
    )
    await client.post(f"{API}/auth/email/change/confirm", json={"token": tokens[2]})
    out, err = capfd.readouterr()
    # "mail.log" is aiosmtpd, the test's receiving server (it logs what it receives, as it should).
    ours = [r for r in caplog.records if not r.name.startswith("mail.log")]
    logged = "\n".join([out, err, *(r.getMessage() for r in ours), *(str(r.args) for r in ours)])
    assert "mail sent" in logged  # the worker did log its deliveries
    assert "/api/v1/auth/email/verify" in logged  # and the access log ran
    for token in tokens:
        assert token not in logged
