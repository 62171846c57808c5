"""Password reset end to end, through the real SMTP server: the mail, its link, the token's rules."""

from __future__ import annotations

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.fixtures.app import make_account
from tests.fixtures.helpers import API, PASSWORD, assert_problem, bearer, unique_email
from tests.fixtures.mail import ACCOUNT_BASE, Mailbox, link_token

NEW_PASSWORD = "a brand new passphrase 42"


async def forgot(client: httpx.AsyncClient, email: str, **headers: str) -> httpx.Response:
    return await client.post(f"{API}/auth/password/forgot", json={"email": email}, headers=headers)


async def reset(client: httpx.AsyncClient, token: str, password: str = NEW_PASSWORD) -> httpx.Response:
    return await client.post(f"{API}/auth/password/reset", json={"token": token, "new_password": password})


async def test_the_whole_reset_flow_through_the_received_message(
    mail_client: tuple[httpx.AsyncClient, Mailbox], db_conn: AsyncConnection
) -> None:
    client, mailbox = mail_client
    account = await make_account(client)
    await mailbox.deliver()  # the sign-up's verification mail

    response = await forgot(client, account["email"].upper(), host="evil.example")
    assert response.status_code == 202, response.text
    received = await mailbox.one_to(account["email"])

    assert received.message["Subject"] == "Reset your userapi password"
    assert received.message["Auto-Submitted"] == "auto-generated"
    token = link_token(received, "reset-password")  # under ACCOUNT_URL, never the Host header's
    assert "evil.example" not in received.raw.decode()
    assert len(token) >= 43  # 256 bits in base64url (>= 128 required)
    stored = (await db_conn.execute(text("SELECT token_hash FROM account_tokens"))).scalars().all()
    assert token.encode() not in stored  # only the hash is kept

    assert (await reset(client, token)).status_code == 204
    # Every session ended: the old access token and refresh token are refused.
    assert (await client.get(f"{API}/users/me", headers=account.headers)).status_code == 401
    refresh = await client.post(
        f"{API}/auth/refresh", json={"refresh_token": account["tokens"]["refresh_token"]}
    )
    assert refresh.status_code == 401
    old = await client.post(f"{API}/auth/login", json={"email": account["email"], "password": PASSWORD})
    assert old.status_code == 401
    new = await client.post(f"{API}/auth/login", json={"email": account["email"], "password": NEW_PASSWORD})
    assert new.status_code == 200
    me = (await client.get(f"{API}/users/me", headers=bearer(new.json()["access_token"]))).json()
    assert me["email_verified_at"] is not None  # opening the link proved the mailbox

    assert_problem(await reset(client, token, "yet another passphrase 7"), 400, "invalid_token")  # single use
    types = (
        (
            await db_conn.execute(
                text("SELECT type FROM auth_events WHERE user_id = :u ORDER BY id"), {"u": account["id"]}
            )
        )
        .scalars()
        .all()
    )
    assert "password_reset_requested" in types
    assert types.count("password_reset_completed") == 1
    assert types[-1] == "secret_check_failed"  # the guard's record of a refused mailed token


async def test_unknown_or_inactive_addresses_get_the_same_answer_and_no_mail(
    mail_client: tuple[httpx.AsyncClient, Mailbox], db_conn: AsyncConnection
) -> None:
    client, mailbox = mail_client
    known = await make_account(client)
    inactive = await make_account(client)
    await db_conn.execute(text("UPDATE users SET is_active = false WHERE id = :u"), {"u": inactive["id"]})
    await mailbox.deliver()
    answers = [
        await forgot(client, email) for email in (known["email"], unique_email("nobody"), inactive["email"])
    ]
    assert [a.status_code for a in answers] == [202, 202, 202]
    assert answers[0].json() == answers[1].json() == answers[2].json()
    assert answers[0].content == answers[1].content
    arrived = await mailbox.deliver()
    assert [r.rcpt_tos for r in arrived] == [[known["email"]]]
    tokens = (
        await db_conn.execute(text("SELECT count(*) FROM account_tokens WHERE purpose = 'password_reset'"))
    ).scalar()
    assert tokens == 1


async def test_a_token_is_refused_when_spent_expired_superseded_or_for_another_purpose(
    mail_client: tuple[httpx.AsyncClient, Mailbox], db_conn: AsyncConnection
) -> None:
    client, mailbox = mail_client
    account = await make_account(client)
    verification = link_token(await mailbox.one_to(account["email"]), "verify-email")

    await forgot(client, account["email"])
    first = link_token(await mailbox.one_to(account["email"]), "reset-password")
    await forgot(client, account["email"])
    second = link_token(await mailbox.one_to(account["email"]), "reset-password")
    assert_problem(await reset(client, first), 400, "invalid_token")  # a newer one retired it

    # Purpose-bound both ways, and a refused use does not spend the token.
    assert_problem(await reset(client, verification), 400, "invalid_token")
    verify = await client.post(f"{API}/auth/email/verify", json={"token": second})
    assert_problem(verify, 400, "invalid_token")

    await db_conn.execute(text("UPDATE account_tokens SET expires_at = now() - interval '1 second'"))
    assert_problem(await reset(client, second), 400, "invalid_token")
    assert_problem(await reset(client, "x" * 43), 400, "invalid_token")  # never issued
    reasons = (
        (
            await db_conn.execute(
                text(
                    "SELECT detail->>'reason' FROM auth_events"
                    " WHERE type = 'secret_check_failed' AND detail->>'kind' = 'mailed_token' ORDER BY id"
                )
            )
        )
        .scalars()
        .all()
    )
    assert reasons == ["retired", "wrong_purpose", "wrong_purpose", "expired", "unknown"]


async def test_a_password_change_retires_outstanding_reset_links(
    mail_client: tuple[httpx.AsyncClient, Mailbox],
) -> None:
    client, mailbox = mail_client
    account = await make_account(client)
    await mailbox.deliver()
    await forgot(client, account["email"])
    token = link_token(await mailbox.one_to(account["email"]), "reset-password")
    changed = await client.post(
        f"{API}/users/me/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=account.headers,
    )
    assert changed.status_code == 204
    assert_problem(await reset(client, token, "another new passphrase 9"), 400, "invalid_token")


async def test_a_refused_new_password_is_422_and_leaves_the_token_usable(
    mail_client: tuple[httpx.AsyncClient, Mailbox],
) -> None:
    client, mailbox = mail_client
    account = await make_account(client)
    await mailbox.deliver()
    await forgot(client, account["email"])
    token = link_token(await mailbox.one_to(account["email"]), "reset-password")
    for weak in ("short", "password123", "x" * 1025):
        assert_problem(await reset(client, token, weak), 422)
    assert (await reset(client, token)).status_code == 204


async def test_hostile_bodies_are_4xx_never_500(mail_client: tuple[httpx.AsyncClient, Mailbox]) -> None:
    client, _ = mail_client
    bodies = {
        "/auth/password/forgot": [{"email": "a\u0000@example.com"}, {"email": "not-an-address"}, {}, []],
        "/auth/password/reset": [
            {"token": "a\u0000b", "new_password": NEW_PASSWORD},
            {"token": "x" * 513, "new_password": NEW_PASSWORD},
            {"token": "t", "new_password": NEW_PASSWORD, "extra": 1},
        ],
        "/auth/email/verify": [{"token": ""}, {"token": None}, {"token": 5}],
        "/auth/email/change/confirm": [{"token": "a\u0000"}, "just a string"],
    }
    for path, cases in bodies.items():
        for body in cases:
            assert_problem(await client.post(f"{API}{path}", json=body), 422)
    # A lone surrogate, as JSON can carry it (httpx will not encode one).
    raw = b'{"token": "\\ud800", "new_password": "a brand new passphrase 42"}'
    lone = await client.post(
        f"{API}/auth/password/reset", content=raw, headers={"content-type": "application/json"}
    )
    assert_problem(lone, 422)


def test_links_point_at_the_configured_account_pages() -> None:
    assert ACCOUNT_BASE.startswith("https://id.example.com/")
