"""One canonical form per identity and credential, over HTTP: every spelling of an address reaches its one
account (sign-up, login, the token form, the throttle key, the admin filter), and every encoding of a
password is that password (NFKC), hashes made before included."""

from __future__ import annotations

import base64
import hashlib
import unicodedata
import uuid
from collections.abc import Callable
from typing import Any

import bcrypt
import httpx
import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tests.fixtures.app import Account, app_client, make_account
from tests.fixtures.helpers import (
    API,
    PASSWORD,
    assert_problem,
    assert_throttled,
    login,
    make_settings,
    register,
)
from userapi.core.config import Settings
from userapi.users.models import User


def wide(text: str) -> str:
    """The full-width forms of ASCII letters, digits and punctuation (U+FF01..U+FF5E)."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


# Each group: spellings of one address as (local part, domain); the canonical form first.
SPELLINGS: dict[str, list[tuple[str, str]]] = {
    "decomposed accent": [
        ("josé", "example.com"),
        ("jose\u0301", "example.com"),
        (" JOSÉ", "Example.COM "),
        ("JOSE\u0301", "EXAMPLE.com"),
    ],
    "internationalised domain": [
        ("ada", "bücher.example.com"),
        ("ada", "xn--bcher-kva.example.com"),
        ("ADA", "BÜCHER.EXAMPLE.COM"),
        ("ada", "bu\u0308cher.example.com"),
    ],
    "full-width domain": [
        ("ada", "example.com"),
        ("ada", f"{wide('example')}.com"),
        ("Ada", "EXAMPLE\u3002COM"),
    ],
    "compatibility letters": [("kelvin.zoë", "example.com"), ("\u212aelvin.zoe\u0308", "example.com")],
}
GROUPS = list(SPELLINGS)


def addresses(group: str) -> list[str]:
    """The group's spellings with a unique tag in the local part (each test its own accounts)."""
    tag = uuid.uuid4().hex[:8]
    return [f"{local}-{tag}@{domain}" for local, domain in SPELLINGS[group]]


async def post_login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post(f"{API}/auth/login", json={"email": email, "password": password})


async def post_token(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    form = {"grant_type": "password", "username": email, "password": password}
    return await client.post(f"{API}/auth/token", data=form)


@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("signed_up_as", [0, -1], ids=["canonical", "other-spelling"])
async def test_every_spelling_reaches_the_one_account(
    client: httpx.AsyncClient, db_conn: AsyncConnection, group: str, signed_up_as: int
) -> None:
    spellings = addresses(group)
    canonical = spellings[0].strip()
    user = await register(client, spellings[signed_up_as])
    assert user["email"] == canonical
    stored = (await db_conn.execute(select(User.email).where(User.id == user["id"]))).scalar_one()
    assert stored == canonical
    for spelling in spellings:
        # The case first: exactly the string signed up with, then every other spelling.
        assert (await post_login(client, spelling)).status_code == 200, spelling
        assert (await post_token(client, spelling)).status_code == 200, spelling
        taken = await client.post(f"{API}/auth/register", json={"email": spelling, "password": PASSWORD})
        assert_problem(taken, 409, "email_taken")


@pytest.mark.parametrize(
    "local", [wide("admin"), "\ufb01nance", "user\u00b2"], ids=["full-width", "ligature", "superscript"]
)
async def test_a_look_alike_address_cannot_be_signed_up_or_created(
    client: httpx.AsyncClient, admin: Account, local: str
) -> None:
    """A full-width `admin@` would be an account of its own that reads as `admin@`: 422 at
    sign-up and admin create (the domain part is mapped instead, see the full-width group)."""
    email = f"{local}-{uuid.uuid4().hex[:8]}@example.com"
    signed_up = await client.post(f"{API}/auth/register", json={"email": email, "password": PASSWORD})
    assert_problem(signed_up, 422, "invalid_email")
    created = await client.post(
        f"{API}/users", json={"email": email, "password": PASSWORD}, headers=admin.headers
    )
    assert_problem(created, 422, "invalid_email")


@pytest.mark.parametrize("group", GROUPS)
async def test_every_spelling_counts_against_one_throttle_key(
    settings: Settings, engine: AsyncEngine, db_conn: AsyncConnection, group: str
) -> None:
    limited = make_settings(settings.plain_database_url or "", rate_limit_login_account="3/minute")
    async with app_client(limited, engine, db_conn) as client:
        spellings = addresses(group)
        await register(client, spellings[0])
        for spelling in (spellings * 3)[:3]:
            assert (await post_login(client, spelling, "wrong guess")).status_code == 401
        # The next attempt, in any spelling and even with the right password, is refused.
        for spelling in spellings:
            assert_throttled(await post_login(client, spelling))
        tag = spellings[0].split("@")[0].rsplit("-", 1)[1]
        keys = await db_conn.scalars(
            text("SELECT DISTINCT detail->>'email' FROM auth_events WHERE detail->>'email' LIKE :tagged"),
            {"tagged": f"%-{tag}@%"},
        )
        # Every attempt was counted and recorded under the one canonical form.
        assert list(keys) == [spellings[0].strip()]


INVALID_ADDRESSES = ["not-an-address", "a@localhost", "a@@example.com", "x" * 300, "ada@example.test", "@"]


@pytest.mark.parametrize("email", INVALID_ADDRESSES)
async def test_an_invalid_address_at_login_gets_the_same_401_as_a_wrong_password(
    client: httpx.AsyncClient, user: Account, email: str
) -> None:
    wrong = await post_login(client, user["email"], "wrong guess")
    invalid = await post_login(client, email)
    assert invalid.status_code == 401, invalid.text
    assert invalid.content == wrong.content
    assert invalid.headers["www-authenticate"] == wrong.headers["www-authenticate"]


async def test_an_invalid_address_is_throttled_like_any_other(
    settings: Settings, engine: AsyncEngine, db_conn: AsyncConnection
) -> None:
    limited = make_settings(settings.plain_database_url or "", rate_limit_login_account="2/minute")
    async with app_client(limited, engine, db_conn) as client:
        for typed in ("Not-An-Address", "not-an-address"):
            assert (await post_login(client, typed)).status_code == 401
        assert_throttled(await post_login(client, "NOT-AN-ADDRESS "))


async def test_the_admin_filter_finds_any_spelling_of_a_prefix(
    client: httpx.AsyncClient, admin: Account
) -> None:
    tag = uuid.uuid4().hex[:8]
    idn = await register(client, f"ada-{tag}@bücher.example.com")
    accent = await register(client, f"josé-{tag}@example.com")
    await register(client, f"ada-{tag}@example.com")

    async def found(prefix: str) -> list[str]:
        response = await client.get(f"{API}/users", params={"email": prefix}, headers=admin.headers)
        assert response.status_code == 200, response.text
        return [item["email"] for item in response.json()["items"]]

    for prefix in (
        f"ADA-{tag}@XN--BCHER-KVA.EXAMPLE.COM",
        f"ada-{tag}@xn--bcher-kva",
        f"Ada-{tag}@BÜCH",
        f"ada-{tag}@bu\u0308",
        f" ada-{tag}@bücher.example.com ",
    ):
        assert await found(prefix) == [idn["email"]], prefix
    for prefix in (f"JOSE\u0301-{tag}", f"josé-{tag}@EXAMPLE", f"jose\u0301-{tag}@{wide('example')}.com"):
        assert await found(prefix) == [accent["email"]], prefix
    assert len(await found(f"ADA-{tag}")) == 2


# --- passwords -----------------------------------------------------------------------------------------

PASSWORD_SPELLINGS = [
    ["P\u00e4sswort-long-1", "Pa\u0308sswort-long-1"],  # the case
    ["\ufb01nal fantasy seven", "final fantasy seven"],  # the fi ligature
    [wide("Wide-Letters-42"), "Wide-Letters-42"],  # full-width
    ["no\u00a0break\u00a0spaces here", "no break spaces here"],  # NO-BREAK SPACE
    ["\u212bngstr\u00f6m unit 1", "A\u030angstro\u0308m unit 1"],  # ANGSTROM SIGN vs decomposed
]


@pytest.mark.parametrize("spellings", PASSWORD_SPELLINGS, ids=lambda s: ascii(s[0]))
@pytest.mark.parametrize("signed_up_with", [0, 1])
async def test_every_encoding_of_a_password_is_that_password(
    client: httpx.AsyncClient, spellings: list[str], signed_up_with: int
) -> None:
    account = await make_account(client, password=spellings[signed_up_with])
    for spelling in spellings:
        assert (await post_login(client, account["email"], spelling)).status_code == 200, ascii(spelling)
    change = await client.post(
        f"{API}/users/me/password",
        json={"current_password": spellings[1 - signed_up_with], "new_password": "a fresh passphrase"},
        headers=account.headers,
    )
    assert change.status_code == 204, change.text


async def stored_hash(conn: AsyncConnection, user_id: str) -> str:
    return str((await conn.execute(select(User.password_hash).where(User.id == user_id))).scalar_one())


def hash_before_normalisation(password: str) -> str:
    """How hashes were made before passwords were NFKC-normalised: the raw form, prehashed, bcrypt."""
    prehashed = base64.b64encode(hashlib.sha256(password.encode("utf-8")).digest())
    return bcrypt.hashpw(prehashed, bcrypt.gensalt(4)).decode("ascii")


@pytest.mark.parametrize("spellings", PASSWORD_SPELLINGS[:3], ids=lambda s: ascii(s[0]))
async def test_hashes_stored_before_still_verify_and_are_replaced(
    client: httpx.AsyncClient, db_conn: AsyncConnection, spellings: list[str]
) -> None:
    # Signed up before the change, with the form that normalisation changes.
    raw = next(s for s in spellings if unicodedata.normalize("NFKC", s) != s)
    account = await make_account(client)
    legacy = hash_before_normalisation(raw)
    await db_conn.execute(update(User).where(User.id == account["id"]).values(password_hash=legacy))

    assert (await post_login(client, account["email"], raw)).status_code == 200
    assert await stored_hash(db_conn, account["id"]) != legacy
    # From now on every encoding of it signs in.
    for spelling in spellings:
        assert (await post_login(client, account["email"], spelling)).status_code == 200, ascii(spelling)
    # A wrong password does not verify in either form, and changes nothing.
    assert (await post_login(client, account["email"], raw + "x")).status_code == 401


async def test_a_hash_already_canonical_is_not_rewritten(
    client: httpx.AsyncClient, db_conn: AsyncConnection
) -> None:
    """An ASCII password's hash is the same in both schemes: signing in keeps it."""
    account = await make_account(client)
    legacy = hash_before_normalisation(PASSWORD)
    await db_conn.execute(update(User).where(User.id == account["id"]).values(password_hash=legacy))
    await login(client, account["email"])
    assert await stored_hash(db_conn, account["id"]) == legacy


# --- the password policy: nothing built on the account's own email or name ---------------------------------

# (local part, full name, password made from the account's email, refused)
POLICY_CASES: dict[str, tuple[str, str | None, Callable[[str], str], bool]] = {
    "the whole address": ("margaret", None, lambda email: email, True),
    "the address upper-cased": ("margaret", None, lambda email: email.upper() + "!", True),
    "the local part, any case": ("margaret", None, lambda email: "MyMargaret-2024", True),
    "a part, after normalisation": ("jose\u0301.ramos", None, lambda email: "JOSÉ likes long walks", True),
    "case-folded (ß = ss)": ("strauss", None, lambda email: "my STRAUß waltz passphrase", True),
    "the full name": ("x", "Grace Hopper", lambda email: "grace hopper rules ok", True),
    "a part of the name": ("x", "Grace Hopper", lambda email: "ilovehopper-1906!", True),
    "the name in full-width letters": (
        "x",
        "Grace Hopper",
        lambda email: wide("grace") + " is amazing",
        True,
    ),
    "fragments under 3 characters": ("al", "Bo Li", lambda email: "albatross bonanza lime", False),
    "unrelated": ("margaret", "Grace Hopper", lambda email: "correct horse battery staple", False),
}


def policy_case(name: str) -> tuple[str, str | None, str, bool]:
    """(email, full name, password, refused) for a case, on an address of its own."""
    local, full_name, make_password, refused = POLICY_CASES[name]
    email = f"{local}.{uuid.uuid4().hex[:6]}@example.com"
    return email, full_name, make_password(email), refused


def expect(response: httpx.Response, refused: bool, ok: int) -> None:
    if refused:
        assert_problem(response, 422, "weak_password")
    else:
        assert response.status_code == ok, response.text


@pytest.mark.parametrize("case", list(POLICY_CASES))
async def test_the_password_policy_at_sign_up_and_admin_create(
    client: httpx.AsyncClient, admin: Account, case: str
) -> None:
    for made_by_admin in (False, True):
        email, full_name, password, refused = policy_case(case)
        body: dict[str, Any] = {"email": email, "password": password, "full_name": full_name}
        if made_by_admin:
            expect(await client.post(f"{API}/users", json=body, headers=admin.headers), refused, 201)
        else:
            expect(await client.post(f"{API}/auth/register", json=body), refused, 201)


@pytest.mark.parametrize("case", list(POLICY_CASES))
async def test_the_password_policy_at_password_change(
    client: httpx.AsyncClient, db_conn: AsyncConnection, case: str
) -> None:
    email, full_name, password, refused = policy_case(case)
    account = await make_account(client, email=email, full_name=full_name)
    response = await client.post(
        f"{API}/users/me/password",
        json={"current_password": PASSWORD, "new_password": password},
        headers=account.headers,
    )
    expect(response, refused, 204)
    if refused:
        # A refused new password costs no attempt: no check of the current password was made.
        checks = await db_conn.scalar(
            text("SELECT count(*) FROM auth_events WHERE user_id = :u AND type LIKE 'secret_check_%'"),
            {"u": account["id"]},
        )
        assert checks == 0
        assert (await client.get(f"{API}/users/me", headers=account.headers)).status_code == 200
