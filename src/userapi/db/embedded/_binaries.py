"""Find or install the PostgreSQL server binaries and act as the service user that runs them."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path

from userapi.core.system_packages import PackageInstallError, install_once

SERVICE_USER = "userapi-pg"
_SERVER_TOOLS = ("initdb", "pg_ctl", "postgres")
_PACKAGES = ("postgresql", "postgresql-contrib")
# Where Debian's postgresql-NN packages put the server binaries (a module constant, so tests can aim
# the search at a stand-in tree).
DEBIAN_ROOT = Path("/usr/lib/postgresql")
_USERADD = [
    "useradd",
    "--system",
    "--user-group",
    "--no-create-home",
    "--shell",
    "/usr/sbin/nologin",
]
_NOT_FOUND = (
    "PostgreSQL server binaries not found: install them (Debian: apt-get install -y postgresql), "
    "set DATABASE_URL to an existing server, or run `docker compose up`."
)


class EmbeddedPostgresError(Exception):
    """A failure to report to the user as one line, without a traceback."""


def _has_server(bindir: Path) -> bool:
    return all(os.access(bindir / tool, os.X_OK) for tool in _SERVER_TOOLS)


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path.parent.name))


def find_server_bindir() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres, or None."""
    candidates: list[Path] = []
    if pg_config := shutil.which("pg_config"):
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            )
            candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    if initdb := shutil.which("initdb"):
        # Resolve first: a symlink such as /usr/local/bin/initdb sits apart from psql and pg_isready.
        candidates += [Path(initdb).resolve().parent, Path(initdb).parent]
    candidates += sorted(DEBIAN_ROOT.glob("*/bin"), key=_version_key, reverse=True)
    return next((c for c in candidates if _has_server(c)), None)


def ensure_server_binaries() -> Path:
    """The server binaries' directory, installing Debian's postgresql when running as root.

    Installs at most once across concurrent processes (userapi.core.system_packages.install_once).
    Raises EmbeddedPostgresError when apt-get fails or the binaries cannot be had.
    """
    try:
        found = install_once(_PACKAGES, find_server_bindir)
    except PackageInstallError as exc:
        raise EmbeddedPostgresError(str(exc)) from None
    if found is None:
        raise EmbeddedPostgresError(_NOT_FOUND)
    return found


def _tool(bindir: Path, name: str) -> str:
    # Client tools normally sit next to the server ones; some layouts only have them on PATH.
    if (bindir / name).exists():
        return str(bindir / name)
    if found := shutil.which(name):
        return found
    raise EmbeddedPostgresError(
        f"{name} not found in {bindir} or on PATH: install the PostgreSQL client tools"
    )


_LEVEL = re.compile(r"\b(PANIC|FATAL|ERROR|E|LOG|WARNING|DETAIL|HINT):\s+(.*)")


def _last_meaningful(text: str) -> str:
    """The last error in a server log or tool output, with the detail that explains it."""
    lines = [_LEVEL.search(line) or line.strip() for line in text.splitlines() if line.strip()]
    for i in reversed(range(len(lines))):
        if isinstance(match := lines[i], re.Match) and match[1] in ("PANIC", "FATAL", "ERROR", "E"):
            message = f"{match[1]}: {match[2]}"
            after, before = lines[i + 1 : i + 2], lines[max(i - 1, 0) : i]
            if after and isinstance(after[0], re.Match) and after[0][1] == "DETAIL":
                message += f" ({after[0][2]})"
            elif "contains errors" in match[2] and before and isinstance(before[0], re.Match):
                message += f" ({before[0][2]})"  # the offending setting is named on the line before
            return message
    last = lines[-1] if lines else "no output"
    return last if isinstance(last, str) else last[0]


def _clean_env() -> dict[str, str]:
    # The user's PG* variables point at some other server; they must not leak into ours.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    return env | {"PGSSLMODE": "disable", "PGGSSENCMODE": "disable", "PGCONNECT_TIMEOUT": "10"}


def _write_private(path: Path, text: str, owner: pwd.struct_passwd | None = None) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        if owner is not None:
            os.fchown(fh.fileno(), owner.pw_uid, owner.pw_gid)
        fh.write(text)
    os.replace(tmp, path)


def _service_user() -> pwd.struct_passwd:
    for name in ("postgres", SERVICE_USER):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
    cmd = [*_USERADD, SERVICE_USER]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    try:  # a concurrent useradd may have won the race, so look the user up either way
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        raise EmbeddedPostgresError(
            f"could not create the system user {SERVICE_USER}: {_last_meaningful(proc.stderr)}"
        ) from None
