"""Errors of the signing-keys domain (rendered as problem documents, or one line by the CLI)."""

from __future__ import annotations

from userapi.core.config import ConfigError
from userapi.core.exceptions import Conflict, NotFound


class KeyNotFound(NotFound):
    code = "key_not_found"
    title = "No such signing key"


class KeyAlreadyRetired(Conflict):
    code = "key_already_retired"
    title = "The key is already retired"


class RotationPending(Conflict):
    code = "rotation_pending"
    title = "A rotation is already under way"


class KeyMaterialUnreadable(ConfigError):
    """A stored private key does not open: KEY_ENCRYPTION_SECRET differs from the one that sealed it."""
