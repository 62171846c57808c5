"""Installers run once however many processes ask together, under the project's installer lock.

Each case starts two real processes that call the project's own ensure-function at the same moment,
on a PATH whose only `apt-get` is a stand-in script: it records every call, notes whether the
installer lock was free while it ran, sleeps, and then "installs" what was asked for.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The stand-in apt-get. `flock -n` fails while another open file holds the lock: that is the check
# that our caller holds it for the whole install.
FAKE_APT_GET = """\
#!/bin/sh
export PATH=/usr/bin:/bin
echo "$*" >> "$FAKE_CALLS"
flock -n "$FAKE_LOCK" true && echo "LOCK-FREE during: $*" >> "$FAKE_CALLS"
case " $* " in
  *" install "*)
    sleep 1
    for pkg in "$@"; do
      case "$pkg" in
        postgresql) mkdir -p "$FAKE_PG_ROOT/16/bin"
                    for t in initdb pg_ctl postgres; do printf '#!/bin/sh\\n' > "$FAKE_PG_ROOT/16/bin/$t"
                      chmod +x "$FAKE_PG_ROOT/16/bin/$t"; done ;;
        redis-server|wrk) printf '#!/bin/sh\\n' > "$FAKE_BIN/$pkg"; chmod +x "$FAKE_BIN/$pkg" ;;
      esac
    done ;;
esac
"""

# Each driver points the installer lock and the Debian PostgreSQL tree into the test's directory, then
# calls the real ensure-function and prints what it returned.
DRIVER = """\
import os, sys
from pathlib import Path
from userapi.core import system_packages
from userapi.db.embedded import _binaries
system_packages.APT_LOCK = Path(os.environ["FAKE_LOCK"])
_binaries.DEBIAN_ROOT = Path(os.environ["FAKE_PG_ROOT"])
print("READY", flush=True)
sys.stdin.readline()  # both processes start the race together
"""
ENSURE = {
    "postgresql": "from userapi.db.embedded import ensure_server_binaries as ensure",
    "redis-server": "from tests.fixtures.redis_server import ensure_redis_server as ensure",
    "wrk": "from bench._wrk import ensure_wrk as ensure",
}

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the project installs packages only as root")


def _race(tmp_path: Path, package: str, callers: int = 2) -> tuple[list[str], list[str]]:
    """Run `callers` processes of the ensure-function for `package` at once; (their results, apt calls)."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "apt-get").write_text(FAKE_APT_GET)
    (fake_bin / "apt-get").chmod(0o755)
    env = {
        "PATH": str(fake_bin),  # no real apt-get, pg_config, initdb or redis-server to be found
        "HOME": str(tmp_path),
        "FAKE_BIN": str(fake_bin),
        "FAKE_CALLS": str(tmp_path / "calls.log"),
        "FAKE_LOCK": str(tmp_path / "apt.lock"),
        "FAKE_PG_ROOT": str(tmp_path / "usr-lib-postgresql"),
    }
    code = DRIVER + ENSURE[package] + "\nprint(json.dumps(str(ensure())))\n"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", "import json\n" + code],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(callers)
    ]
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY", proc.stderr.read() if proc.stderr else ""
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    calls = (tmp_path / "calls.log").read_text().splitlines()
    return results, calls


@needs_root
@pytest.mark.parametrize("package", sorted(ENSURE))
def test_two_processes_install_once_under_the_lock(tmp_path: Path, package: str) -> None:
    results, calls = _race(tmp_path, package)
    assert not [c for c in calls if c.startswith("LOCK-FREE")], f"apt-get ran without the lock: {calls}"
    updates = [c for c in calls if "update" in c.split()]
    installs = [c for c in calls if "install" in c.split()]
    assert len(updates) == 1, f"apt-get update ran {len(updates)} times: {calls}"
    assert len(installs) == 1, f"apt-get install ran {len(installs)} times: {calls}"
    assert package in installs[0].split()
    assert results[0] == results[1]  # the second caller uses what the first installed
    assert Path(results[0]).exists()


@needs_root
def test_apt_get_failure_names_apts_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from userapi.core import system_packages

    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "apt-get").write_text(
        textwrap.dedent("""\
        #!/bin/sh
        echo "Reading package lists..."
        echo "E: Unable to locate package no-such-package"
        exit 100
        """)
    )
    (fake_bin / "apt-get").chmod(0o755)
    lock = tmp_path / "apt.lock"
    monkeypatch.setenv("PATH", str(fake_bin))
    monkeypatch.setattr(system_packages, "APT_LOCK", lock)
    with pytest.raises(system_packages.PackageInstallError, match="Unable to locate package no-such-package"):
        system_packages.install_once(["no-such-package"], lambda: None)
    assert lock.exists()


def _runs_apt_get(path: Path) -> bool:
    """True when a Python file names the apt-get program itself (a command list, shutil.which)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return any(isinstance(node, ast.Constant) and node.value == "apt-get" for node in ast.walk(tree))


def test_every_installer_goes_through_install_once() -> None:
    # One mechanism: a module running apt-get on its own would race the others on apt's lock again.
    from userapi.core import system_packages

    mechanism = Path(system_packages.__file__).resolve()
    allowed = {mechanism, Path(__file__).resolve()}  # this file writes the stand-in apt-get
    python = [p for d in ("src", "tests", "bench") for p in (ROOT / d).rglob("*.py")]
    assert [str(p.relative_to(ROOT)) for p in python if p.resolve() not in allowed and _runs_apt_get(p)] == []
    assert _runs_apt_get(mechanism)  # the check finds what it looks for
    # Shell scripts cannot import it: those that run apt-get take the same lock with flock(1).
    for script in (ROOT / "scripts").iterdir():
        text = script.read_text()
        if re.search(r"apt-get (-\S+ )*(update|install)", text):
            assert f"flock {system_packages.APT_LOCK}" in text, script.name
