"""The two servers under test: the service as production runs it, and the floor; their processes and RSS."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench._common import HOST, REPO, BenchError, free_port, log, request

VENV_BIN = Path(sys.executable).parent


def userapi_argv() -> list[str]:
    """The installed console script, as production runs it (falls back to `python -m userapi`)."""
    script = VENV_BIN / "userapi"
    return [str(script)] if script.exists() else [sys.executable, "-m", "userapi"]


def service_env(database_url: str, jwt_secret: str, overrides: dict[str, str]) -> dict[str, str]:
    """The environment of a production deployment; nothing of the caller's userapi settings leaks in."""
    from userapi.core.config import Settings

    ours = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in ours and not k.startswith("PG")}
    env |= {
        "ENVIRONMENT": "production",
        "DATABASE_URL": database_url,
        "JWT_SECRET": jwt_secret,
        "KEY_ENCRYPTION_SECRET": jwt_secret + "-key-encryption",
        # Production refuses to start without SMTP_URL; the bench has no mail server and measures
        # no mail (bench/mail_latency.py does), so delivery is off, as the error message offers.
        "MAIL_DELIVERY": "off",
        # Throttling would turn the login and sign-up storms into 429s; everything else stays default.
        "RATE_LIMIT_LOGIN_ACCOUNT": "1000000/minute",
        "RATE_LIMIT_LOGIN_IP": "1000000/minute",
        "RATE_LIMIT_REGISTER_IP": "1000000/minute",
        "RATE_LIMIT_SECRET_ACCOUNT": "1000000/minute",
        "RATE_LIMIT_SECRET_IP": "1000000/minute",
    }
    return env | overrides


class Server:
    """One server process group: started, probed until ready, measured, stopped."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], port: int, run_dir: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.port = port
        self.run_dir = run_dir
        self.log_path = run_dir / f"{name}-{port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    @classmethod
    def service(cls, workers: int, env: dict[str, str], run_dir: Path) -> Server:
        port = free_port()
        argv = [*userapi_argv(), "serve", "--host", HOST, "--port", str(port), "--workers", str(workers)]
        return cls("service", argv, env, port, run_dir)

    @classmethod
    def floor(cls, workers: int, env: dict[str, str], run_dir: Path) -> Server:
        port = free_port()
        argv = [sys.executable, "-m", "uvicorn", "bench.floor:app", "--app-dir", str(REPO)]
        argv += ["--host", HOST, "--port", str(port), "--workers", str(workers)]
        # Log level info for the start-up lines wait_workers reads; no access log, so nothing per request.
        argv += ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "info"]
        return cls("floor", argv, env, port, run_dir)

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as out:
            # cwd is a directory without a .env: the service reads only the environment given here.
            self.started_at = time.perf_counter()
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.run_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, path: str = "/health/ready", timeout: float = 90) -> float:
        """Seconds from start until `path` answered 200."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited early; its log ({self.log_path}): {self.log_tail()}")
            try:
                if request(self.port, "GET", path, timeout=2)[0] == 200:
                    return time.perf_counter() - self.started_at
            except OSError:
                pass
            time.sleep(0.01)
        raise BenchError(f"{self.name} not ready after {timeout:.0f} s; log: {self.log_tail()}")

    def check_alive(self) -> None:
        """Stop the bench with the reason when the server is gone (a crash, or someone's signal)."""
        if self.proc is None or (code := self.proc.poll()) is None:
            return
        signalled = "Shutting down" in self._log_text()
        why = (
            "it shut down as on SIGTERM/SIGINT: another process on this machine stopped it"
            if signalled
            else ""
        )
        raise BenchError(
            f"{self.name} (pid {self.proc.pid}) exited with status {code} during the run; {why} "
            f"(log {self.log_path}): {self.log_tail(3)}"
        )

    def wait_workers(self, workers: int, timeout: float = 120) -> float:
        """Seconds from start until every worker finished its start-up and went idle.

        A worker still importing (or being replaced by the supervisor) when wrk connects gets none
        of the run's keep-alive connections, and the run then measures fewer workers than it says.
        """
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            pids = self.worker_pids()
            started = self._log_text().count("Application startup complete")
            if len(pids) == workers and started >= workers:
                before = self.cpu_seconds()
                time.sleep(0.3)
                after = self.cpu_seconds()
                if after.keys() == before.keys() and all(after[p] - before[p] < 0.05 for p in after):
                    return time.perf_counter() - self.started_at - 0.3
            else:
                time.sleep(0.05)
        raise BenchError(f"{self.name}: {workers} worker(s) not up after {timeout:.0f} s: {self.log_tail()}")

    def cpu_seconds(self) -> dict[int, float]:
        """CPU time (user + system) used so far by each worker."""
        ticks = os.sysconf("SC_CLK_TCK")
        found = {}
        for pid in self.worker_pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            found[pid] = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        return found

    def _log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def worker_restarts(self) -> int:
        """Workers uvicorn's supervisor replaced (it kills one that misses a 5 s health-check ping)."""
        lines = self._log_text().splitlines()
        return sum(1 for line in lines if "Child process" in line and "died" in line)

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: the children when there are several, else the process."""
        if self.proc is None:
            return []
        workers = [pid for pid in children(self.proc.pid) if "resource_tracker" not in _cmdline(pid)]
        return workers or [self.proc.pid]

    def rss_mb(self) -> dict[str, float]:
        """VmRSS in MiB of each worker (and of the supervisor, when there is one)."""
        assert self.proc is not None
        workers = self.worker_pids()
        rss = {f"worker {pid}": _rss_mb(pid) for pid in workers}
        if workers != [self.proc.pid]:
            rss[f"supervisor {self.proc.pid}"] = _rss_mb(self.proc.pid)
        return rss

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM (graceful, as an orchestrator would), then SIGKILL the process group if it lingers."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"{self.name} (pid {proc.pid}) ignored SIGTERM for {timeout:.0f} s: killing its group")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the group we created: leftover workers go too
        proc.wait()


def children(pid: int) -> list[int]:
    """The pids whose parent is `pid` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Field 4 (ppid) follows the parenthesised command name, which may itself contain spaces.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return float("nan")
