"""The web pages over HTTP (fast, no browser): security headers, cookie flags, the console session
as a real userapi session, CSRF, permissions and refusals shown as messages."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tests.fixtures.app import Account, build_test_app, create_role, make_account, served_routes
from tests.fixtures.helpers import API, PASSWORD, TEST_SECRET
from tests.web.helpers import cookie_header, csrf_token, replace_cookie, sign_in
from userapi.core.config import Settings
from userapi.roles.constants import BuiltInRole
from userapi.web.cookies import CookieSigner

SESSION = "__Host-console"


@pytest.fixture
async def web(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client: https (the cookies are Secure), cookies kept, no redirect followed."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        yield client


@pytest.fixture
async def admin_web(web: httpx.AsyncClient, admin: Account) -> httpx.AsyncClient:
    response = await sign_in(web, admin["email"])
    assert response.status_code == 303, response.text
    return web


def assert_page_headers(response: httpx.Response) -> None:
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "default-src 'none'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("path", ["/admin/sign-in", "/account/sign-in"])
async def test_sign_in_pages_carry_the_page_headers_and_a_pre_session_cookie(
    web: httpx.AsyncClient, path: str
) -> None:
    response = await web.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert_page_headers(response)
    pre = cookie_header(response, "__Host-console_pre").lower()
    assert "httponly" in pre
    assert "secure" in pre
    assert "samesite=strict" in pre
    assert "path=/" in pre
    assert '<label for="email">' in response.text
    assert '<label for="password">' in response.text


async def test_signing_in_sets_a_strict_http_only_secure_session_cookie(
    web: httpx.AsyncClient, admin: Account, settings: Settings
) -> None:
    response = await sign_in(web, admin["email"])
    assert response.status_code == 303
    assert response.headers["location"] == "/admin"
    session = cookie_header(response, SESSION).lower()
    for flag in ("httponly", "secure", "samesite=strict", "path=/"):
        assert flag in session
    assert f"max-age={settings.console_idle_timeout_seconds}" in session
    assert "domain=" not in session

    users = await web.get("/admin/users")
    assert users.status_code == 200
    assert_page_headers(users)
    assert admin["email"] in users.text
    assert PASSWORD not in users.text


async def test_outside_https_in_development_the_cookie_is_not_secure(
    settings: Settings, engine: AsyncEngine, db_conn: AsyncConnection, client: httpx.AsyncClient
) -> None:
    app = build_test_app(settings.model_copy(update={"environment": "development"}), engine, db_conn)
    account = await make_account(client, db_conn, BuiltInRole.admin)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as web:
        response = await sign_in(web, account["email"])
        assert response.status_code == 303
        session = cookie_header(response, "console").lower()
        assert "secure" not in session
        assert "httponly" in session
        assert (await web.get("/admin/users")).status_code == 200


async def test_a_page_without_a_session_sends_the_browser_to_sign_in(web: httpx.AsyncClient) -> None:
    for path in ("/admin", "/admin/users", "/admin/roles", "/admin/audit", "/account"):
        response = await web.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"].endswith("/sign-in"), path


async def test_a_wrong_password_is_a_message_on_the_sign_in_page(
    web: httpx.AsyncClient, admin: Account
) -> None:
    response = await sign_in(web, admin["email"], "not the password at all")
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/sign-in"
    page = await web.get("/admin/sign-in")
    assert "Incorrect email or password" in page.text
    assert SESSION not in web.cookies


async def test_an_account_without_an_admin_permission_is_refused(
    web: httpx.AsyncClient, user: Account
) -> None:
    assert (await sign_in(web, user["email"])).status_code == 303
    response = await web.get("/admin/users")
    assert response.status_code == 403
    assert "grants no administrative permission" in response.text
    assert_page_headers(response)
    # Its own account pages stay open to it.
    assert (await web.get("/account")).status_code == 200


async def test_a_post_without_the_csrf_token_is_refused(
    admin_web: httpx.AsyncClient, client: httpx.AsyncClient, admin: Account, user: Account
) -> None:
    url = f"/admin/users/{user['id']}/role"
    missing = await admin_web.post(url, data={"role": "admin"})
    forged = await admin_web.post(url, data={"role": "admin", "csrf_token": "x" * 43})
    for response in (missing, forged):
        assert response.status_code == 403
        assert "form has expired or did not come from this site" in response.text
    unchanged = await client.get(f"{API}/users/{user['id']}", headers=admin.headers)
    assert unchanged.json()["role"] == "user"
    # The same form with the token does change the role: the refusals above were the token's.
    token = csrf_token((await admin_web.get(f"/admin/users/{user['id']}")).text)
    done = await admin_web.post(url, data={"role": "admin", "csrf_token": token})
    assert done.status_code == 303
    changed = await client.get(f"{API}/users/{user['id']}", headers=admin.headers)
    assert changed.json()["role"] == "admin"


async def test_the_sign_in_form_needs_its_csrf_token(web: httpx.AsyncClient, admin: Account) -> None:
    await web.get("/admin/sign-in")
    response = await web.post("/admin/sign-in", data={"email": admin["email"], "password": PASSWORD})
    assert response.status_code == 403
    assert SESSION not in web.cookies


async def test_another_sessions_token_is_refused(
    app: FastAPI, admin_web: httpx.AsyncClient, admin: Account, user: Account
) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://testserver"
    ) as other:
        await sign_in(other, admin["email"])
        token = csrf_token((await other.get(f"/admin/users/{user['id']}")).text)
    response = await admin_web.post(
        f"/admin/users/{user['id']}/active", data={"active": "false", "csrf_token": token}
    )
    assert response.status_code == 403


async def test_the_last_admin_refusal_is_a_readable_message(
    admin_web: httpx.AsyncClient, admin: Account
) -> None:
    page = f"/admin/users/{admin['id']}"
    token = csrf_token((await admin_web.get(page)).text)
    response = await admin_web.post(f"{page}/role", data={"role": "user", "csrf_token": token})
    assert response.status_code == 303
    assert response.headers["location"] == page
    shown = await admin_web.get(page)
    assert "The last active admin cannot be demoted" in shown.text
    assert 'role="alert"' in shown.text
    # Shown once.
    assert "The last active admin" not in (await admin_web.get(page)).text


async def test_ending_the_session_through_the_api_ends_the_console_session(
    web: httpx.AsyncClient, client: httpx.AsyncClient, admin: Account, user: Account
) -> None:
    assert (await sign_in(web, user["email"], area="/account")).status_code == 303
    assert (await web.get("/account")).status_code == 200
    ended = await client.delete(f"{API}/users/{user['id']}/sessions", headers=admin.headers)
    assert ended.status_code == 204
    response = await web.get("/account")
    assert response.status_code == 303
    assert response.headers["location"] == "/account/sign-in"


async def test_the_console_session_is_listed_and_ended_like_any_session(
    web: httpx.AsyncClient, client: httpx.AsyncClient, user: Account
) -> None:
    await sign_in(web, user["email"], area="/account")
    sessions = (await client.get(f"{API}/auth/sessions", headers=user.headers)).json()
    assert len(sessions) == 2  # the API's sign-in of the fixture, and the browser's
    browser = next(s for s in sessions if not s["current"])
    assert browser["user_agent"].startswith("python-httpx")
    ended = await client.delete(f"{API}/auth/sessions/{browser['id']}", headers=user.headers)
    assert ended.status_code == 204
    assert (await web.get("/account")).status_code == 303


async def test_an_idle_session_is_signed_out(
    web: httpx.AsyncClient, admin: Account, settings: Settings
) -> None:
    await sign_in(web, admin["email"])
    signer = CookieSigner(settings.jwt_secret)
    value = signer.loads(web.cookies[SESSION])
    assert value is not None
    value["t"] = int(time.time()) - settings.console_idle_timeout_seconds - 5
    replace_cookie(web, SESSION, signer.dumps(value))
    response = await web.get("/admin/users")
    assert response.status_code == 303
    assert "max-age=0" in cookie_header(response, SESSION).lower()  # the browser forgets it
    # And the server ends the session: a copy of the cookie, or its refresh token, opens nothing.
    refreshed = await web.post(f"{API}/auth/refresh", json={"refresh_token": value["r"]})
    assert refreshed.status_code == 401, refreshed.text


async def test_the_session_cookie_is_sealed_not_only_signed(
    web: httpx.AsyncClient, admin: Account, settings: Settings
) -> None:
    """The cookie carries the session's refresh token: whoever copies the cookie must not read it."""
    await sign_in(web, admin["email"])
    cookie = web.cookies[SESSION]
    value = CookieSigner(settings.jwt_secret).loads(cookie)
    assert value is not None
    raw = base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4))
    for secret in (value["r"], value["a"]):
        assert secret not in cookie
        assert secret.encode() not in raw


async def test_a_forged_cookie_is_no_session(web: httpx.AsyncClient, admin: Account) -> None:
    await sign_in(web, admin["email"])
    forged = CookieSigner(SecretStr("another secret " + "y" * 40))
    value = CookieSigner(SecretStr(TEST_SECRET)).loads(web.cookies[SESSION])
    assert value is not None
    replace_cookie(web, SESSION, forged.dumps(value))
    assert (await web.get("/admin/users")).status_code == 303


@pytest.mark.parametrize("junk", ["\u00e9" * 10, "caf\u00e9.\u00e9t\u00e9", "\u00ff.\u00ff"])
async def test_a_cookie_or_csrf_token_with_any_character_is_refused_not_a_500(
    admin_web: httpx.AsyncClient, user: Account, junk: str
) -> None:
    """Non-ASCII in a signed value: constant-time comparison of such a str raises TypeError."""
    url = f"/admin/users/{user['id']}/role"
    refused = await admin_web.post(url, data={"role": "admin", "csrf_token": junk})
    assert refused.status_code == 403, refused.text
    # A cookie header travels as Latin-1: the same characters, in the session cookie.
    raw = junk.encode("latin-1")
    response = await admin_web.get("/admin/users", headers={"cookie": SESSION.encode() + b"=" + raw})
    assert response.status_code in (303, 400), response.text


@pytest.mark.parametrize("raw_id", ["%E2%82%AC", "%0D%0ASet-Cookie:%20x=1", "%C3%A9", "a%2Fb"])
async def test_a_form_url_with_any_id_gets_a_clean_answer(admin_web: httpx.AsyncClient, raw_id: str) -> None:
    """A refused form redirects back to its page, built from the URL's own ids: those must reach
    the Location header escaped (a raw euro sign was a 500, a raw CR LF no answer at all)."""
    token = csrf_token((await admin_web.get("/admin/roles")).text)
    form = {"csrf_token": token, "role": "user", "description": "d"}
    for url in (f"/admin/roles/{raw_id}", f"/admin/users/{raw_id}/role", f"/admin/users/{raw_id}/active"):
        response = await admin_web.post(url, data=form)
        assert response.status_code < 500, (url, response.text)
        location = response.headers.get("location", "")
        assert location.isascii(), (url, location)
        assert location.isprintable(), (url, location)
        assert "x" not in admin_web.cookies, url


async def test_a_form_without_its_text_field_changes_nothing(
    admin_web: httpx.AsyncClient, client: httpx.AsyncClient, admin: Account
) -> None:
    """Unticked boxes send nothing, but a form without its description or name field is no form of
    ours: refused, and the stored value is kept (it was blanked)."""
    name = f"kept-{uuid.uuid4().hex[:8]}"
    body = {"name": name, "description": "keep me", "permissions": ["users:read"]}
    assert (await client.post(f"{API}/roles", json=body, headers=admin.headers)).status_code == 201
    named = await client.patch(f"{API}/users/me", json={"full_name": "Kept Name"}, headers=admin.headers)
    assert named.status_code == 200, named.text
    token = csrf_token((await admin_web.get(f"/admin/roles/{name}")).text)
    await admin_web.post(f"/admin/roles/{name}", data={"csrf_token": token})
    await admin_web.post("/account/name", data={"csrf_token": token})
    role = (await client.get(f"{API}/roles/{name}", headers=admin.headers)).json()
    assert (role["description"], role["permissions"]) == ("keep me", ["users:read"])
    me = (await client.get(f"{API}/users/me", headers=admin.headers)).json()
    assert me["full_name"] == "Kept Name"


async def test_a_user_page_offers_only_what_the_callers_role_may_do(
    web: httpx.AsyncClient, client: httpx.AsyncClient, db_conn: AsyncConnection, admin: Account, user: Account
) -> None:
    reader = await make_account(client, db_conn, await create_role(db_conn, "users:read"))
    actions = ('/role"', '/active"', '/sessions/end"', '/delete"')
    assert (await sign_in(web, reader["email"])).status_code == 303
    page = (await web.get(f"/admin/users/{user['id']}")).text
    assert user["email"] in page
    assert not [action for action in actions if action in page]
    web.cookies.clear()
    assert (await sign_in(web, admin["email"])).status_code == 303
    page = (await web.get(f"/admin/users/{user['id']}")).text
    assert [action for action in actions if action in page] == list(actions)


async def test_an_expired_access_token_is_renewed_with_the_refresh_token(
    web: httpx.AsyncClient, admin: Account, settings: Settings
) -> None:
    await sign_in(web, admin["email"])
    signer = CookieSigner(settings.jwt_secret)
    value = signer.loads(web.cookies[SESSION])
    assert value is not None
    old_refresh = value["r"]
    value["a"] = "expired.or.unreadable"
    replace_cookie(web, SESSION, signer.dumps(value))
    response = await web.get("/admin/users")
    assert response.status_code == 200
    renewed = signer.loads(web.cookies[SESSION])
    assert renewed is not None
    assert renewed["r"] != old_refresh
    assert (await web.get("/admin/users")).status_code == 200


# --- every page is guarded: a walk over the routes ---------------------------------------------------

# Pages for browsers that are not signed in: sign-in, and the pages mailed links open. Their forms'
# CSRF tokens are bound to the browser's pre-session cookie.
SIGN_IN_ROUTES = {
    (method, f"{area}/{page}")
    for method in ("GET", "POST")
    for area, page in (
        ("/admin", "sign-in"),
        ("/account", "sign-in"),
        ("/admin", "sign-in/second-factor"),
        ("/account", "sign-in/second-factor"),
        ("/account", "forgot-password"),
        ("/account", "reset-password"),
        ("/account", "verify-email"),
        ("/account", "confirm-email"),
    )
}


def page_routes(app: FastAPI) -> list[tuple[str, str, Any]]:
    """(method, path, dependant) of every web page route (the /admin and /account areas)."""
    found = []
    for route in served_routes(app):
        path = getattr(route, "path", "")
        if not path.startswith(("/admin", "/account")):
            continue
        for method in sorted((route.methods or set()) - {"HEAD"}):
            found.append((method, path, route.dependant))
    return found


def calls(dependant: Any) -> set[str]:
    names = set()
    for sub in dependant.dependencies:
        names.add(sub.call.__qualname__)
        names |= calls(sub)
    return names


def test_every_form_is_csrf_checked_and_every_page_needs_a_session(app: FastAPI) -> None:
    routes = page_routes(app)
    assert len(routes) >= 20
    for method, path, dependant in routes:
        needed = calls(dependant)
        if method == "POST":
            csrf = "check_sign_in_form" if (method, path) in SIGN_IN_ROUTES else "session_form.<locals>.check"
            assert csrf in needed, (method, path)
        if (method, path) in SIGN_IN_ROUTES or path.endswith("/sign-out"):
            continue
        area = "get_admin_console" if path.startswith("/admin") else "get_account_console"
        assert area in needed, (method, path)


async def test_every_page_sends_an_anonymous_browser_to_sign_in(app: FastAPI, web: httpx.AsyncClient) -> None:
    checked = 0
    for method, path, _ in page_routes(app):
        if (method, path) in SIGN_IN_ROUTES:
            continue
        concrete = path.replace("{user_id}", str(uuid.uuid4())).replace("{session_id}", str(uuid.uuid4()))
        concrete = concrete.replace("{name}", "support")
        response = await web.request(method, concrete, data={"csrf_token": "x"} if method == "POST" else None)
        area = "/admin" if path.startswith("/admin") else "/account"
        assert response.status_code == 303, (method, path, response.status_code)
        assert response.headers["location"] == f"{area}/sign-in", (method, path)
        checked += 1
    assert checked >= 15


# --- the API's throttling and audit, and nothing secret in the logs ----------------------------------


async def test_sign_in_is_throttled_and_audited_as_the_api_is(
    settings: Settings,
    engine: AsyncEngine,
    db_conn: AsyncConnection,
    client: httpx.AsyncClient,
    admin: Account,
) -> None:
    strict = settings.model_copy(update={"rate_limit_login_account": "2/minute"})
    app = build_test_app(strict, engine, db_conn)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://testserver"
    ) as web:
        for _ in range(2):
            await sign_in(web, admin["email"], "wrong password, again")
        throttled = await sign_in(web, admin["email"])  # the right password, too late
        assert throttled.status_code == 303
        page = await web.get("/admin/sign-in")
        assert "Too many attempts" in page.text
        assert SESSION not in web.cookies
    failed = await client.get(
        f"{API}/audit-events?user_id={admin['id']}&type=login_failed", headers=admin.headers
    )
    assert len(failed.json()["items"]) == 2
    # Throttled before the account is looked up: the event names the address, not the account.
    throttled_events = await client.get(f"{API}/audit-events?type=login_throttled", headers=admin.headers)
    assert [e["detail"].get("email") for e in throttled_events.json()["items"]] == [admin["email"]]


async def test_no_password_cookie_or_token_reaches_the_logs(
    web: httpx.AsyncClient, admin: Account, capsys: pytest.CaptureFixture[str]
) -> None:
    await sign_in(web, admin["email"])
    page = await web.get(f"/admin/users/{admin['id']}")
    await web.get("/account/reset-password?token=secret-token-value-123")
    await web.post(
        f"/admin/users/{admin['id']}/role", data={"role": "user", "csrf_token": csrf_token(page.text)}
    )
    logged = capsys.readouterr()
    output = logged.out + logged.err
    assert "/admin/users" in output  # the access log did run
    assert PASSWORD not in output
    assert web.cookies[SESSION] not in output
    assert "secret-token-value-123" not in output
    assert csrf_token(page.text) not in output


async def test_a_dead_second_factor_token_sends_the_browser_back_to_the_password(
    web: httpx.AsyncClient,
) -> None:
    form = await web.get("/admin/sign-in")
    data = {"csrf_token": csrf_token(form.text), "mfa_token": "not-a-live-token", "code": "123456"}
    response = await web.post("/admin/sign-in/second-factor", data=data)
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/sign-in"
    assert 'role="alert"' in (await web.get("/admin/sign-in")).text
    # Neither a code nor a recovery code: the same form again, saying what is missing.
    empty = await web.post("/admin/sign-in/second-factor", data={**data, "code": ""})
    assert empty.status_code == 422
    assert "Give the code your authenticator app shows" in empty.text
    assert 'name="mfa_token" value="not-a-live-token"' in empty.text


# --- errors outside the page routes ----------------------------------------------------------------


def assert_error_page(response: httpx.Response, status: int, heading: str, home: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert_page_headers(response)
    assert f"<h1>{heading}</h1>" in response.text
    assert f'href="{home}"' in response.text
    assert '"code"' not in response.text  # not the API's problem document


@pytest.mark.parametrize(
    ("path", "home"),
    [("/admin/nope", "/admin"), ("/admin/users/x/y/z", "/admin"), ("/account/nope", "/account")],
)
async def test_an_unknown_page_address_is_a_page_not_a_problem_document(
    web: httpx.AsyncClient, path: str, home: str
) -> None:
    assert_error_page(await web.get(path), 404, "Page not found", home)
    head = await web.head(path)
    assert (head.status_code, head.content) == (404, b"")


async def test_visiting_a_form_only_address_is_a_page_naming_the_button(
    admin_web: httpx.AsyncClient, admin: Account
) -> None:
    response = await admin_web.get(f"/admin/users/{admin['id']}/role")
    assert_error_page(response, 405, "Not a page to open", "/admin")
    assert response.headers["allow"] == "POST"


async def test_a_form_over_the_size_limit_is_a_page(web: httpx.AsyncClient, settings: Settings) -> None:
    body = {"email": "a@example.com", "password": "x" * (settings.max_body_bytes + 1)}
    response = await web.post("/admin/sign-in", data=body)
    assert_error_page(response, 413, "Form too large", "/admin")
    assert response.headers["connection"] == "close"


@pytest.mark.parametrize("path", [f"{API}/nope", "/administrator", "/accounts", "/nope"])
async def test_other_addresses_keep_the_problem_document(web: httpx.AsyncClient, path: str) -> None:
    response = await web.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "not_found"


async def test_a_body_over_the_limit_at_the_api_keeps_the_problem_document(
    web: httpx.AsyncClient, settings: Settings
) -> None:
    response = await web.post(f"{API}/auth/login", content=b"{" + b" " * settings.max_body_bytes + b"}")
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
