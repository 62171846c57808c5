"""userapi: users, authentication and role-based access control over HTTP."""

__version__ = "0.1.0"
