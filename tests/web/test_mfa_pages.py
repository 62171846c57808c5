"""The second factor in the browser: TOTP turned on from the account page (QR code and secret on the
page, a code computed from that secret), the second step of sign-in with a code or a recovery code,
turning it off, and an admin resetting someone's second factor."""

from __future__ import annotations

import re
import time

import pyotp
from playwright.async_api import Page, expect

from tests.fixtures.helpers import API, PASSWORD
from tests.web.helpers import STEP, Accounts, Authenticator, sign_in_page


def wrong_code(secret: str) -> str:
    valid = {str(pyotp.TOTP(secret).at(time.time() + k * STEP)) for k in (-1, 0, 1, 2)}
    return next(c for c in ("000000", "111111", "222222", "333333", "444444") if c not in valid)


async def enable_totp_by_api(accounts: Accounts, email: str) -> Authenticator:
    """TOTP on for `email` through the API; returns its authenticator."""
    tokens = await accounts.login(email)
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    enrol = await accounts.http.post(
        f"{API}/users/me/mfa/totp", json={"current_password": PASSWORD}, headers=bearer
    )
    assert enrol.status_code == 201, enrol.text
    app = Authenticator(str(enrol.json()["secret"]))
    confirm = await accounts.http.post(
        f"{API}/users/me/mfa/totp/confirm", json={"code": await app.code()}, headers=bearer
    )
    assert confirm.status_code == 200, confirm.text
    return app


async def test_turning_totp_on_then_signing_in_with_a_code_and_a_recovery_code(
    refusing_page: Page, accounts: Accounts
) -> None:
    page = refusing_page
    email = f"careful-{int(time.time() * 1000)}@example.com"
    await accounts.make(email)
    await sign_in_page(page, email, area="/account")

    # On: the password, then the QR code and the secret on the page, then a code from that secret.
    await page.get_by_label("Your password (to turn it on)").fill(PASSWORD)
    await page.get_by_role("button", name="Turn on two-step sign-in").click()
    qr = page.get_by_role("img", name="QR code of your authenticator key")
    await expect(qr).to_be_visible()
    assert (await qr.get_attribute("src") or "").startswith("data:image/svg+xml;base64,")
    secret = (await page.locator("#totp-secret").inner_text()).strip()
    app = Authenticator(secret)
    await page.get_by_label("Code from your authenticator app").fill(wrong_code(secret))
    await page.get_by_role("button", name="Turn on").click()
    await expect(page.get_by_role("alert")).to_contain_text("not correct")
    await expect(qr).to_be_visible()  # the same enrolment, asked again
    await page.get_by_label("Code from your authenticator app").fill(await app.code())
    await page.get_by_role("button", name="Turn on").click()
    await expect(page.get_by_role("status")).to_contain_text("Two-step sign-in is on")
    codes = await page.get_by_role("list", name="Recovery codes").locator("code").all_inner_texts()
    assert len(codes) == 10

    # Sign-in now takes a second step: a wrong code is said to be wrong, a right one lets in.
    await page.get_by_role("button", name="Sign out").click()
    await sign_in_page(page, email, area="/account")
    await expect(page.get_by_role("heading", name=re.compile("second factor"))).to_be_visible()
    await page.get_by_label("Code from your authenticator app").fill(wrong_code(secret))
    await page.get_by_role("button", name="Continue").click()
    await expect(page.get_by_role("alert")).to_be_visible()
    await page.get_by_label("Code from your authenticator app").fill(await app.code())
    await page.get_by_role("button", name="Continue").click()
    await expect(page.get_by_role("heading", name="Your account")).to_be_visible()

    # A recovery code works once.
    await page.get_by_role("button", name="Sign out").click()
    await sign_in_page(page, email, area="/account")
    await page.get_by_label("Or one of your recovery codes").fill(codes[0])
    await page.get_by_role("button", name="Continue").click()
    await expect(page.get_by_role("heading", name="Your account")).to_be_visible()
    await page.get_by_role("button", name="Sign out").click()
    await sign_in_page(page, email, area="/account")
    await page.get_by_label("Or one of your recovery codes").fill(codes[0])
    await page.get_by_role("button", name="Continue").click()
    await expect(page.get_by_role("alert")).to_be_visible()
    await page.get_by_label("Or one of your recovery codes").fill(codes[1])
    await page.get_by_role("button", name="Continue").click()
    await expect(page.get_by_role("heading", name="Your account")).to_be_visible()

    # Off: the password and a code.
    await page.get_by_label("Your password", exact=True).first.fill(PASSWORD)
    await page.locator("#off_code").fill(await app.code())
    await page.get_by_role("button", name="Turn off").click()
    await expect(page.get_by_role("status")).to_contain_text("Two-step sign-in is off")
    assert (await accounts.login(email))["access_token"]  # the password alone signs in again


async def test_an_admin_with_totp_signs_in_and_resets_someone_elses_second_factor(
    page: Page, accounts: Accounts
) -> None:
    stamp = int(time.time() * 1000)
    admin, target = f"boss-{stamp}@example.com", f"lost-phone-{stamp}@example.com"
    await accounts.make(admin, "admin")
    target_id = await accounts.make(target)
    admin_app = await enable_totp_by_api(accounts, admin)
    await enable_totp_by_api(accounts, target)

    await sign_in_page(page, admin)
    await expect(page.get_by_role("heading", name=re.compile("second factor"))).to_be_visible()
    await page.get_by_label("Code from your authenticator app").fill(await admin_app.code())
    await page.get_by_role("button", name="Continue").click()
    await expect(page.get_by_role("heading", name="Users")).to_be_visible()

    await page.goto(f"/admin/users/{target_id}")
    await expect(page.locator(".facts")).to_contain_text("on (authenticator app)")
    await page.get_by_role("button", name="Reset second factor").click()
    await expect(page.get_by_role("status")).to_contain_text(f"The second factor of {target} is removed")
    await expect(page.locator(".facts")).to_contain_text("off")
    assert (await accounts.login(target))["access_token"]  # the password alone signs in again
