"""Imports every domain's models so Base.metadata is complete; for migrations and tests only."""

from userapi.auth import models as auth_models
from userapi.db.base import Base
from userapi.users import models as users_models

__all__ = ["Base", "auth_models", "users_models"]
