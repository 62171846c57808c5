"""The EmbeddedPostgres cluster: locking, ports, status, initdb, start, stop and readiness."""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from userapi.db.embedded._binaries import (
    _NOT_FOUND,
    EmbeddedPostgresError,
    _clean_env,
    _last_meaningful,
    _service_user,
    _tool,
    _write_private,
    ensure_server_binaries,
    find_server_bindir,
)

HOST = "127.0.0.1"
SUPERUSER = "userapi"
# As root the cluster lives here: initdb/postgres refuse root, and the service user they run as
# cannot reach a checkout under a private home such as /root (mode 700).
ROOT_MODE_BASE = Path("/var/lib/userapi-pg")
READY_TIMEOUT = 30
Env = dict[str, str]
Completed = subprocess.CompletedProcess[str]
_NOT_RUNNING = "the embedded database is not running: run `userapi db start`"
# A throwaway dev/test cluster: durability is traded for speed; tests and benches open many connections.
_CONFIG = """
# --- userapi embedded development cluster ---
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 200
shared_buffers = 128MB
fsync = off
synchronous_commit = off
full_page_writes = off
"""


@dataclass(frozen=True)
class ClusterStatus:
    running: bool
    data_dir: Path
    port: int | None
    pid: int | None
    url: str | None


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        # postgres sets SO_REUSEADDR too, so sockets lingering in TIME_WAIT do not make a port "taken".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _pick_port(preferred: int | None) -> int:
    if preferred and _port_free(preferred):
        return preferred
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedPostgres:
    """A PostgreSQL cluster private to one project directory, listening on 127.0.0.1 only."""

    def __init__(self, root: Path, database: str = "userapi") -> None:
        self.root = Path(root).absolute()
        self.database = database
        self._as_root = os.geteuid() == 0

    @property
    def _base(self) -> Path:
        """Directory holding the data directory and the server log."""
        if not self._as_root:
            return self.root
        try:
            return Path((self.root / "location").read_text().strip())
        except FileNotFoundError:
            return ROOT_MODE_BASE / hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:16]

    @property
    def _data(self) -> Path:
        return self._base / "data"

    @property
    def _log(self) -> Path:
        return self._base / "postgres.log"

    def start(self) -> str:
        """Create the cluster if needed, start it if stopped, create the database; return its URL."""
        with self._lock():  # also keeps concurrent starts from running apt-get twice
            bindir = ensure_server_binaries()
            self._prepare_base(bindir)
            if not (self._data / "PG_VERSION").exists():
                self._initdb(bindir)
            if not (self.root / "password").exists():
                raise EmbeddedPostgresError(
                    f"{self.root / 'password'} is missing, so the cluster cannot be used: "
                    f"run `userapi db stop` and delete {self._data} to recreate it"
                )
            running = self._postmaster()
            port = running[1] if running else self._launch(bindir)
            self._wait_ready(bindir, port)
            self._ensure_database(bindir, port)
            return self._url(port)

    def stop(self) -> None:
        """Stop the server (fast shutdown) if it is running."""
        if not self.root.is_dir():
            return
        with self._lock():
            if self._postmaster() is None:
                return
            bindir = find_server_bindir()
            if bindir is None:
                raise EmbeddedPostgresError(_NOT_FOUND)
            self._pg_ctl_stop(bindir, "fast")

    def _pg_ctl_stop(self, bindir: Path, mode: str) -> None:
        cmd = [str(bindir / "pg_ctl"), "stop", "-D", str(self._data), "-m", mode, "-w", "-t", "60"]
        proc = self._run(cmd, service=True)
        if proc.returncode != 0 and self._postmaster() is not None:
            raise EmbeddedPostgresError(f"pg_ctl stop failed: {_last_meaningful(proc.stderr + proc.stdout)}")

    def status(self) -> ClusterStatus:
        running = self._postmaster()
        if running is None:
            return ClusterStatus(False, self._data, None, None, None)
        pid, port = running
        try:
            url: str | None = self._url(port)
        except OSError:  # password file unreadable (another user's cluster)
            url = None
        return ClusterStatus(True, self._data, port, pid, url)

    def url(self) -> str:
        url = self.status().url
        if url is None:
            raise EmbeddedPostgresError(_NOT_RUNNING)
        return url

    @contextmanager
    def _lock(self) -> Iterator[None]:
        # Serialises start/stop across processes, e.g. `make run` and `make test` starting together.
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield

    def _url(self, port: int) -> str:
        password = quote((self.root / "password").read_text().strip(), safe="")
        return f"postgresql://{SUPERUSER}:{password}@{HOST}:{port}/{quote(self.database, safe='')}"

    def _run(self, cmd: list[str], service: bool = False, env: Env | None = None) -> Completed:
        user = _service_user() if service and self._as_root else None
        return subprocess.run(
            cmd,
            check=False,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=120,
            env=env or _clean_env(),
            cwd=self._base if service else None,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
            start_new_session=True,  # keep the daemonised postmaster out of the terminal's Ctrl-C
        )

    def _prepare_base(self, bindir: Path) -> None:
        if not self._as_root:
            return
        owner = _service_user()
        base = self._base
        if not (self.root / "location").exists() and base.exists():
            # Left by a checkout whose .data was wiped, password included: start afresh, as non-root would.
            if self._postmaster() is not None:
                self._pg_ctl_stop(bindir, "immediate")
            shutil.rmtree(base)
        ROOT_MODE_BASE.mkdir(mode=0o755, parents=True, exist_ok=True)
        base.mkdir(mode=0o700, exist_ok=True)
        os.chown(base, owner.pw_uid, owner.pw_gid)
        os.chmod(base, 0o700)
        if not (self.root / "location").exists():
            _write_private(self.root / "location", f"{base}\n")

    def _initdb(self, bindir: Path) -> None:
        # initdb into a side directory and rename at the end, so `data` exists only when complete.
        tmp = self._base / "data.initdb"
        shutil.rmtree(tmp, ignore_errors=True)
        password = secrets.token_urlsafe(24)
        _write_private(self.root / "password", password)
        pwfile = self._base / ".pwfile"
        _write_private(pwfile, password, _service_user() if self._as_root else None)
        locale = "C.UTF-8" if Path("/usr/lib/locale/C.utf8").exists() else "C"
        flags = f"-U {SUPERUSER} --auth=scram-sha-256 --encoding=UTF8 --locale={locale} --no-sync".split()
        cmd = [str(bindir / "initdb"), "-D", str(tmp), f"--pwfile={pwfile}", *flags]
        try:
            proc = self._run(cmd, service=True)
        finally:
            pwfile.unlink(missing_ok=True)
        if proc.returncode != 0:
            raise EmbeddedPostgresError(f"initdb failed: {_last_meaningful(proc.stderr + proc.stdout)}")
        with (tmp / "postgresql.conf").open("a") as conf:
            conf.write(_CONFIG)
        tmp.rename(self._data)

    def _postmaster(self) -> tuple[int, int] | None:
        """(pid, port) of the live postmaster serving our data directory, per postmaster.pid."""
        try:
            lines = (self._data / "postmaster.pid").read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None
        if Path("/proc/self").exists():
            # After a crash the pid may be reused or an unreaped zombie: a postmaster's cwd is its data dir.
            try:
                return (pid, port) if os.path.samefile(f"/proc/{pid}/cwd", self._data) else None
            except OSError:
                return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return pid, port

    def _clear_stale_pidfile(self) -> None:
        pidfile = self._data / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().split()[0])
            os.kill(pid, 0)
        except (ValueError, IndexError):
            pidfile.unlink(missing_ok=True)  # truncated by a crash: postgres refuses such a file
            return
        except OSError:
            return  # missing, or the process is gone: postgres itself clears that (and checks shared memory)
        # The pid now belongs to another live process (or a zombie), which makes postgres refuse to start.
        pidfile.unlink(missing_ok=True)

    def _launch(self, bindir: Path) -> int:
        self._clear_stale_pidfile()
        port_file = self.root / "port"
        preferred = int(port_file.read_text()) if port_file.exists() else None
        for _ in range(3):
            port = _pick_port(preferred)
            offset = self._log.stat().st_size if self._log.exists() else 0
            cmd = [
                str(bindir / "pg_ctl"),
                "start",
                "-w",
                "-t",
                str(READY_TIMEOUT),
                "-D",
                str(self._data),
            ]
            cmd += ["-l", str(self._log), "-o", f"-p {port}"]
            proc = self._run(cmd, service=True)
            if proc.returncode == 0:
                port_file.write_text(f"{port}\n")
                return port
            if _port_free(port):
                break  # the port was not the problem
            preferred = None  # someone took the port between our check and postgres binding it: pick another
        try:
            with self._log.open(errors="replace") as log:
                log.seek(offset)
                reason = _last_meaningful(log.read() or proc.stderr + proc.stdout)
        except FileNotFoundError:
            reason = _last_meaningful(proc.stderr + proc.stdout)
        raise EmbeddedPostgresError(f"PostgreSQL did not start (log: {self._log}): {reason}")

    def _wait_ready(self, bindir: Path, port: int) -> None:
        isready = [_tool(bindir, "pg_isready"), "-q", "-h", HOST, "-p", str(port), "-t", "2"]
        deadline = time.monotonic() + READY_TIMEOUT
        while self._run(isready).returncode != 0:
            if self._postmaster() is None or time.monotonic() > deadline:
                raise EmbeddedPostgresError(
                    f"PostgreSQL on port {port} is not accepting connections "
                    f"(log: {self._log}): {_last_meaningful(self._log.read_text())}"
                )
            time.sleep(0.1)

    def _ensure_database(self, bindir: Path, port: int) -> None:
        env = _clean_env() | {"PGPASSWORD": (self.root / "password").read_text().strip()}
        psql = [
            _tool(bindir, "psql"),
            *f"-X -q -At -h {HOST} -p {port} -U {SUPERUSER} -d postgres -c".split(),
        ]
        name = self.database
        proc = self._run(
            [
                *psql,
                "SELECT 1 FROM pg_database WHERE datname = '{}'".format(name.replace("'", "''")),
            ],
            env=env,
        )
        if proc.returncode == 0 and proc.stdout.strip() == "1":
            return
        if proc.returncode == 0:
            proc = self._run([*psql, 'CREATE DATABASE "{}"'.format(name.replace('"', '""'))], env=env)
        if proc.returncode != 0:
            reason = _last_meaningful(proc.stderr + proc.stdout)
            raise EmbeddedPostgresError(f"could not create database {name!r} on port {port}: {reason}")
