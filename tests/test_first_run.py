"""The first `make test` on a fresh machine: the database server is ready before any xdist worker starts.

A nested pytest runs a real xdist worker on an empty DATA_DIR (no cluster yet) with this suite's
database plugin (tests/fixtures/database.py) as its only plugin besides xdist (a faster start). Its
probe asks for no fixture, so nothing in the worker starts the cluster: it finds it running only if
the controller's session hook installed and started it before starting the worker.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.fixtures.load import destroy_cluster
from userapi.db.embedded import EmbeddedPostgres

ROOT = Path(__file__).resolve().parents[1]

PROBE = """\
import os
from pathlib import Path

import pytest

from userapi.db.embedded import EmbeddedPostgres


def test_the_cluster_is_running_when_a_worker_starts(request: pytest.FixtureRequest) -> None:
    assert hasattr(request.config, "workerinput"), "this probe must run in an xdist worker"
    cluster = EmbeddedPostgres(Path(os.environ["DATA_DIR"]) / "postgres")
    assert cluster.status().running, "no worker may have to install or start the database itself"
"""


def test_the_session_starts_the_database_before_its_workers(tmp_path: Path) -> None:
    (tmp_path / "test_probe.py").write_text(PROBE)
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts =\n")
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TEST_DATABASE_URL")}
    env |= {"DATA_DIR": str(data_dir), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    try:
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-c",
                str(tmp_path / "pytest.ini"),
                "-p",
                "xdist.plugin",
                "-p",
                "tests.fixtures.database",
                "-n",
                "1",
                "-q",
                "-p",
                "no:cacheprovider",
                str(tmp_path / "test_probe.py"),
            ],
            cwd=ROOT,  # `tests` is importable from here
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
        assert "1 passed" in run.stdout
    finally:
        destroy_cluster(EmbeddedPostgres(data_dir / "postgres"))
