"""The one canonical form of each identity and credential: email addresses (and their prefixes), passwords.

Every entry point compares these forms, never what the caller typed: sign-up, login, the OAuth2
token form, the throttle keys, the admin `?email=` filter, `create-admin`, and the flows still to
come (email change, forgot-password) call `canonical_email` / `canonical_email_or_none`; password
hashing and verification call `canonical_password`.

The stored email is email-validator's `normalized` form lower-cased: surrounding whitespace
trimmed, the local part in Unicode NFC, the domain mapped by UTS #46 (IDNA 2008, non-transitional:
full-width letters, upper case, A-labels such as `xn--bcher-kva` all become the U-label `bücher`),
then the whole address lower-cased (so the UNIQUE constraint is case-insensitive uniqueness) and
NFC again. Stored rows have always been `normalized.lower()`, so no stored row changes.
"""

from __future__ import annotations

import unicodedata

import idna
from email_validator import EmailNotValidError, validate_email

_A_LABEL = "xn--"


class InvalidEmail(ValueError):
    """The text is not an email address this service accepts; the message says why."""


def canonical_email(value: str) -> str:
    """The canonical (stored) form of an email address: ` JOSE + U+0301 @Bücher.DE` -> `josé@bücher.de`.

    No DNS lookup: deliverability is not ours to check, and lookups would make sign-up slow.
    Special-use domains (`.test`, `.local`, `localhost`) are refused, as email-validator does by
    default. Idempotent. Raises InvalidEmail.
    """
    try:
        result = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidEmail(str(exc)) from None
    return unicodedata.normalize("NFC", result.normalized.lower())


def refuse_lookalike_address(email: str) -> None:
    """For a new account's or a changed address (canonical form): refuse a local part that holds
    compatibility characters, which NFKC would map to other characters (full-width letters such
    as U+FF41, ligatures such as U+FB01, superscripts). Such an address looks like another
    account's and is not one; PRECIS (RFC 8265, 3.4.1) maps width for the same reason. Not applied
    when signing in, so an existing account of that form can still sign in. Raises InvalidEmail.
    """
    local = email.rpartition("@")[0]
    if unicodedata.normalize("NFKC", local) != local:
        raise InvalidEmail(
            "The part before the @ holds look-alike characters (full-width letters, ligatures, ...): "
            "type it with ordinary characters"
        )


def canonical_email_or_none(value: str) -> str | None:
    """`canonical_email(value)`, or None when it is not a valid address (login: no such account)."""
    try:
        return canonical_email(value)
    except InvalidEmail:
        return None


def canonical_email_prefix(value: str) -> str:
    """A prefix of an address brought as far towards the canonical form as a prefix allows.

    A whole valid address becomes exactly `canonical_email(value)`. Otherwise the local part is
    NFC-normalised and lower-cased like a stored one, and the domain part gets UTS #46's
    character mapping, with each complete A-label (`xn--...` followed by a dot, or the last label
    when it decodes) turned into its U-label: stored addresses never hold A-labels. Used by the
    admin `?email=` filter, and as the throttle key of a login whose email is not an address.
    """
    value = value.strip()
    whole = canonical_email_or_none(value)
    if whole is not None:
        return whole
    local, at, domain = unicodedata.normalize("NFC", value).partition("@")
    local = unicodedata.normalize("NFC", local.lower())
    if not at:
        return local
    return f"{local}@{_domain_prefix(domain)}"


def _domain_prefix(domain: str) -> str:
    try:
        mapped = idna.uts46_remap(domain, std3_rules=False, transitional=False)
    except (idna.IDNAError, ValueError):
        return unicodedata.normalize("NFC", domain.lower())
    labels = [_u_label(label) if label.startswith(_A_LABEL) else label for label in mapped.split(".")]
    return unicodedata.normalize("NFC", ".".join(labels).lower())


def _u_label(label: str) -> str:
    try:
        return str(idna.decode(label))
    except (idna.IDNAError, UnicodeError, ValueError):
        return label  # cut short, or not an A-label at all: compared as typed (lower-cased)


def canonical_password(value: str) -> str:
    """A password in the form that is hashed and verified: Unicode NFKC (NIST SP 800-63B 5.1.1.2).

    `a` followed by U+0308 (decomposed) and `ä` (composed), or full-width and ASCII letters, are
    then one password, whatever keyboard or platform typed it.
    """
    return unicodedata.normalize("NFKC", value)
