"""The password rule that needs the account: no password built on the user's own email address or name.

One place, called by the users service wherever a password is set (sign-up, admin create,
`create-admin`, password change, and the reset flow to come), so no entry point can skip it.
"""

from __future__ import annotations

import re

from userapi.core.canonical import canonical_password
from userapi.users.exceptions import WeakPassword

# Fragments shorter than this are not refused. Two-character fragments turn up by chance in most
# random passwords (26 * 26 letter pairs), so refusing them would refuse good passwords; from
# three on a fragment is what a targeted guess is built from ("bob" + "1990!"), and chance hits
# are rare (17,576 letter triples). NIST SP 800-63B 5.1.1.2 asks for "context-specific words,
# such as the name of the service, the username".
MIN_FRAGMENT_CHARS = 3

_SEPARATORS = re.compile(r"[\W_]+")


def _fold(text: str) -> str:
    # NFKC first (the form passwords are hashed in), then case-folded: "Strauß" matches "STRAUSS".
    return canonical_password(text).casefold()


def personal_fragments(email: str, full_name: str | None) -> set[str]:
    """The folded texts a password must not contain: the address, its local part, the full name,
    and each part of the local part and of the name split at punctuation and spaces."""
    local = email.rpartition("@")[0] or email
    wholes = [email, local] + ([full_name] if full_name else [])
    fragments = set()
    for whole in wholes:
        folded = _fold(whole).strip()
        fragments.add(folded)
        fragments.update(_SEPARATORS.split(folded))
    return {f for f in fragments if len(f) >= MIN_FRAGMENT_CHARS}


def check_password(password: str, email: str, full_name: str | None) -> None:
    """Refuse a password that equals or contains the user's email, its local part or name (or a part
    of them of MIN_FRAGMENT_CHARS characters or more), compared case-insensitively after NFKC.

    Raises WeakPassword (422).
    """
    folded = _fold(password)
    if any(fragment in folded for fragment in personal_fragments(email, full_name)):
        raise WeakPassword(
            "The password must not contain your email address or your name, nor a part of them "
            f"of {MIN_FRAGMENT_CHARS} or more characters"
        )
