"""Values of the users domain shared by models, schemas and services."""

from __future__ import annotations

import enum


class Role(enum.StrEnum):
    user = "user"
    admin = "admin"
