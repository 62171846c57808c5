"""Manage a private PostgreSQL cluster under a project directory from the machine's server binaries."""

from __future__ import annotations

import fcntl
import hashlib
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

HOST = "127.0.0.1"
SUPERUSER = "userapi"
SERVICE_USER = "userapi-pg"
# As root the cluster lives here: initdb/postgres refuse root, and the service user they run as
# cannot reach a checkout under a private home such as /root (mode 700).
ROOT_MODE_BASE = Path("/var/lib/userapi-pg")
READY_TIMEOUT = 30
_SERVER_TOOLS = ("initdb", "pg_ctl", "postgres")
_INSTALL = [["apt-get", "update"], ["apt-get", "install", "-y", "postgresql", "postgresql-contrib"]]
_USERADD = [
    "useradd",
    "--system",
    "--user-group",
    "--no-create-home",
    "--shell",
    "/usr/sbin/nologin",
]
Env = dict[str, str]
Completed = subprocess.CompletedProcess[str]
_NOT_FOUND = (
    "PostgreSQL server binaries not found: install them (Debian: apt-get install -y postgresql), "
    "set DATABASE_URL to an existing server, or run `docker compose up`."
)
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


class EmbeddedPostgresError(Exception):
    """A failure to report to the user as one line, without a traceback."""


@dataclass(frozen=True)
class ClusterStatus:
    running: bool
    data_dir: Path
    port: int | None
    pid: int | None
    url: str | None


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
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    return next((c for c in candidates if _has_server(c)), None)


def ensure_server_binaries() -> Path:
    """Find the server binaries, installing them with apt-get when running as root on Debian."""
    if (found := find_server_bindir()) is not None:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log = Path(tempfile.gettempdir()) / "userapi-postgresql-install.log"
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        with log.open("w") as out:
            for cmd in _INSTALL:
                proc = subprocess.run(
                    cmd,
                    check=False,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
                if proc.returncode != 0:
                    reason = _last_meaningful(log.read_text(errors="replace"))
                    raise EmbeddedPostgresError(f"`{' '.join(cmd)}` failed (see {log}): {reason}")
        if (found := find_server_bindir()) is not None:
            return found
    raise EmbeddedPostgresError(_NOT_FOUND)


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
