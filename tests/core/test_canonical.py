"""The canonical forms themselves: every spelling of one address is one string, the form is a fixed point,
and a prefix of it filters to it; passwords compare in NFKC."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from userapi.core.canonical import (
    InvalidEmail,
    canonical_email,
    canonical_email_or_none,
    canonical_email_prefix,
    canonical_password,
)


def wide(text: str) -> str:
    """The full-width forms of ASCII letters, digits and punctuation (U+FF01..U+FF5E)."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


# Each group: spellings of one address, and its canonical (stored) form first.
SPELLINGS = [
    ["josé@example.com", "jose\u0301@example.com", " JOSÉ@Example.COM ", "JOSE\u0301@EXAMPLE.COM"],
    ["zoë.ünal@example.com", "zoe\u0308.u\u0308nal@example.com", "ZOË.ÜNAL@example.com"],
    [
        "ada@bücher.example.com",
        "ada@xn--bcher-kva.example.com",
        "ADA@BÜCHER.EXAMPLE.COM",
        "Ada@XN--BCHER-KVA.Example.Com",
        "ada@bu\u0308cher.example.com",
    ],
    ["ada@example.com", f"ada@{wide('example')}.com", "ADA@EXAMPLE\u3002COM", "\tada@example.com\n"],
    ["kelvin@example.com", "\u212aelvin@example.com"],  # KELVIN SIGN: NFC makes it K
    ["user@例え.jp", "user@xn--r8jz45g.jp", "USER@例え.JP"],
    ["straße@faß.de", "STRAßE@xn--fa-hia.de"],  # IDNA 2008 keeps ß; lower() keeps it too
    ["i\u0307stanbul@example.com", "\u0130stanbul@example.com"],  # lower() of U+0130 is i + U+0307
]


@pytest.mark.parametrize("group", SPELLINGS, ids=[g[0] for g in SPELLINGS])
def test_every_spelling_of_an_address_is_one_canonical_form(group: list[str]) -> None:
    stored = group[0]
    for spelling in group:
        assert canonical_email(spelling) == stored, spelling
        assert canonical_email_or_none(spelling) == stored
        assert canonical_email_prefix(spelling) == stored
    assert canonical_email(stored) == stored


@pytest.mark.parametrize(
    "text",
    [
        "",
        "no-at-sign",
        "a@",
        "@example.com",
        "a@@example.com",
        "a@example.test",
        "a@localhost",
        "a b@example.com",
    ],
)
def test_not_an_address(text: str) -> None:
    with pytest.raises(InvalidEmail):
        canonical_email(text)
    assert canonical_email_or_none(text) is None


@pytest.mark.parametrize(
    ("typed", "prefix"),
    [
        ("ADA@BÜCH", "ada@büch"),
        ("ada@xn--bcher-kva", "ada@bücher"),  # a complete A-label, even without its dot
        ("ada@xn--bcher-kva.ex", "ada@bücher.ex"),
        ("Ada@XN--BCHER-KVA.", "ada@bücher."),
        ("JOSE\u0301", "josé"),
        ("jose\u0301-", "josé-"),
        (f"a@{wide('exam')}", "a@exam"),
        ("  Mixed.Case ", "mixed.case"),
        ("a@xn--bcher-kv", "a@xn--bcher-kv"),  # a cut-short A-label stays as typed
        ("%' OR 1=1", "%' or 1=1"),
    ],
)
def test_prefixes_are_brought_as_far_as_they_go(typed: str, prefix: str) -> None:
    assert canonical_email_prefix(typed) == prefix


LOCAL_CHARS = st.sampled_from([*"abcxyzABCXYZ019._-+", "é", "e\u0301", "Ü", "ß", "İ", "ø", "Ω", "ж", "中"])
DOMAINS = st.sampled_from(
    [
        "example.com",
        "EXAMPLE.org",
        "bücher.example.com",
        "xn--bcher-kva.example",
        "例え.jp",
        f"{wide('example')}.net",
    ]
)


@settings(max_examples=300, derandomize=True, deadline=None, database=None)
@given(local=st.lists(LOCAL_CHARS, min_size=1, max_size=12).map("".join), domain=DOMAINS)
def test_the_canonical_form_is_a_fixed_point_and_its_prefixes_find_it(local: str, domain: str) -> None:
    stored = canonical_email_or_none(f"{local}@{domain}")
    if stored is None:  # e.g. a local part starting with a dot: not an address, nothing to find
        return
    assert canonical_email(stored) == stored
    assert unicodedata.is_normalized("NFC", stored)
    assert stored == stored.lower()
    # What an admin types as a prefix of a stored address, in the stored form, finds it.
    for end in range(1, len(stored) + 1):
        assert stored.startswith(canonical_email_prefix(stored[:end])), stored[:end]


@pytest.mark.parametrize(
    "spellings",
    [
        ["Pässwort-long-1", "Pa\u0308sswort-long-1"],
        ["ﬁnal fantasy 7", "final fantasy 7"],  # the fi ligature
        [wide("Password-wide"), "Password-wide"],  # full-width letters
        ["no\u00a0break space", "no break space"],  # NO-BREAK SPACE
        ["Å ring", "A\u030a ring", "\u212b ring"],  # precomposed, decomposed, ANGSTROM SIGN
    ],
)
def test_passwords_compare_in_nfkc(spellings: list[str]) -> None:
    forms = {canonical_password(s) for s in spellings}
    assert len(forms) == 1
    (form,) = forms
    assert canonical_password(form) == form
