"""Manage a private PostgreSQL cluster under a project directory from the machine's server binaries."""

from userapi.db.embedded._binaries import (
    SERVICE_USER,
    EmbeddedPostgresError,
    ensure_server_binaries,
    find_server_bindir,
)
from userapi.db.embedded._cluster import (
    HOST,
    READY_TIMEOUT,
    ROOT_MODE_BASE,
    SUPERUSER,
    ClusterStatus,
    EmbeddedPostgres,
)

__all__ = [
    "HOST",
    "READY_TIMEOUT",
    "ROOT_MODE_BASE",
    "SERVICE_USER",
    "SUPERUSER",
    "ClusterStatus",
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "ensure_server_binaries",
    "find_server_bindir",
]
