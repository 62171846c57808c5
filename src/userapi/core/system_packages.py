"""Install missing Debian packages once, however many processes ask at the same moment."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# One lock for every apt-get the project runs (PostgreSQL, redis-server, pgbouncer, wrk, python3-venv in
# scripts/bootstrap-uv, debootstrap in scripts/fresh-machine-check). Root-owned directory: installing
# needs root anyway, and a world-writable place would let another user hold or replace the file.
APT_LOCK = Path("/var/lib/userapi/apt.lock")
# apt's own locks make a second concurrent apt-get fail at once ("E: Could not get lock"); our lock
# covers our processes, this makes apt wait (seconds) for anyone else's, e.g. unattended-upgrades.
_APT_LOCK_TIMEOUT_S = 300
_ERROR = re.compile(r"^(E|Err):?\s*(.*)$", re.M)


class PackageInstallError(Exception):
    """apt-get failed; the message names the command, apt's own reason and the log file."""


@contextmanager
def apt_lock(path: Path | None = None) -> Iterator[None]:
    """Hold the project's inter-process installer lock (flock(2), exclusive) for the block.

    `path` defaults to APT_LOCK (read at call time). Blocks until the lock is free; it is released
    when the block ends or the process dies, so a crashed installer never leaves it held.
    """
    lock = path or APT_LOCK
    lock.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def can_install() -> bool:
    """True when this process may install Debian packages: running as root where apt-get exists."""
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def install_once(
    packages: Sequence[str], present: Callable[[], T | None], options: Sequence[str] = ()
) -> T | None:
    """What `present()` finds, after installing `packages` with apt-get when it finds nothing.

    `present` looks for what the packages provide (a binary, a directory) and returns it or None;
    `options` go to `apt-get install` (e.g. "--no-install-recommends").
    Concurrent callers (pytest-xdist workers, `make run` next to `make test`) serialise on the
    installer lock and ask `present()` again once they hold it, so the first one installs and the
    others use its result instead of running apt-get into apt's lock. Without root or apt-get
    nothing is installed and the result is None: the caller names the ways out.

    Raises PackageInstallError when `apt-get update` or `apt-get install` fails.
    """
    if (found := present()) is not None:
        return found
    if not can_install():
        return None
    with apt_lock():
        if (found := present()) is not None:
            return found  # installed by whoever held the lock before us
        apt_get_install(packages, options)
    return present()


def apt_get_install(packages: Sequence[str], options: Sequence[str] = ()) -> None:
    """`apt-get update`, then `apt-get install -y OPTIONS PACKAGES`, non-interactively; call under apt_lock().

    Output goes to a log file in the temp directory, named after the first package.
    Raises PackageInstallError naming apt's last error when either command fails.
    """
    log = Path(tempfile.gettempdir()) / f"userapi-{packages[0]}-install.log"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    wait = [f"-oDPkg::Lock::Timeout={_APT_LOCK_TIMEOUT_S}"]
    with log.open("w") as out:
        for cmd in (["apt-get", *wait, "update"], ["apt-get", *wait, "install", "-y", *options, *packages]):
            proc = subprocess.run(
                cmd, check=False, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env
            )
            if proc.returncode != 0:
                errors = _ERROR.findall(log.read_text(errors="replace"))
                reason = errors[-1][1].strip() if errors else f"exit status {proc.returncode}"
                raise PackageInstallError(f"`{' '.join(cmd)}` failed (see {log}): {reason}")
