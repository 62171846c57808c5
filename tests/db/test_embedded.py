"""Tests for the embedded PostgreSQL launcher: real initdb, real servers, no mocks."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from userapi.db.embedded import (
    ROOT_MODE_BASE,
    EmbeddedPostgres,
    EmbeddedPostgresError,
    ensure_server_binaries,
    find_server_bindir,
)

IS_ROOT = os.geteuid() == 0


def _fetchval(url: str, sql: str) -> object:
    """The first value of a query's result, or None for statements (which may be several)."""

    async def run() -> object:
        conn = await asyncpg.connect(url)
        try:
            if sql.lstrip().upper().startswith(("SELECT", "SHOW")):
                return await conn.fetchval(sql)
            await conn.execute(sql)
            return None
        finally:
            await conn.close()

    return asyncio.run(run())


def _destroy(pg: EmbeddedPostgres) -> None:
    pg.stop()
    base = pg.status().data_dir.parent
    # As root the cluster lives outside the tmp dir; remove it, but never anything else.
    if IS_ROOT and base.parent == ROOT_MODE_BASE:
        shutil.rmtree(base, ignore_errors=True)


def _private_root(parent: Path) -> Path:
    """A project root inside a 0700 "home", like a checkout under /root."""
    home = parent / "home"
    home.mkdir(mode=0o700)
    os.chmod(home, 0o700)
    return home / "checkout" / ".data" / "postgres"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    pg = EmbeddedPostgres(_private_root(tmp_path_factory.mktemp("embedded")))
    try:
        yield pg
    finally:
        _destroy(pg)


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[Callable[[], EmbeddedPostgres]]:
    made: list[EmbeddedPostgres] = []

    def make() -> EmbeddedPostgres:
        made.append(EmbeddedPostgres(tmp_path / f"c{len(made)}" / ".data" / "postgres"))
        return made[-1]

    yield make
    for pg in made:
        _destroy(pg)


def _is_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def test_start_connects_has_uuid_ossp_and_is_idempotent(
    cluster: EmbeddedPostgres,
) -> None:
    url = cluster.start()
    assert url.startswith("postgresql://userapi:")
    assert url.endswith("/userapi")
    assert "@127.0.0.1:" in url
    assert _fetchval(url, "SELECT 1") == 1
    _fetchval(url, 'CREATE EXTENSION IF NOT EXISTS "uuid-ossp"')
    assert len(str(_fetchval(url, "SELECT uuid_generate_v4()"))) == 36
    assert _fetchval(url, "SHOW listen_addresses") == "127.0.0.1"
    assert _fetchval(url, "SHOW max_connections") == "200"
    assert stat.S_IMODE((cluster.root / "password").stat().st_mode) == 0o600

    first = cluster.status()
    assert first.running
    assert first.url == url
    assert first.pid is not None
    started = time.monotonic()
    assert cluster.start() == url
    assert time.monotonic() - started < 2
    assert cluster.status().pid == first.pid
    assert cluster.url() == url


def test_stop_then_start_keeps_data(cluster: EmbeddedPostgres) -> None:
    url = cluster.start()
    _fetchval(url, "CREATE TABLE IF NOT EXISTS kept (v int); INSERT INTO kept VALUES (42)")
    cluster.stop()
    status = cluster.status()
    assert not status.running
    assert status.pid is None
    assert status.url is None
    with pytest.raises(EmbeddedPostgresError, match="not running: run `userapi db start`"):
        cluster.url()
    cluster.stop()  # idempotent

    url = cluster.start()
    assert _fetchval(url, "SELECT max(v) FROM kept") == 42


def test_start_after_kill_9_leaves_stale_pidfile(cluster: EmbeddedPostgres) -> None:
    cluster.start()
    pid = cluster.status().pid
    assert pid is not None
    victims = [pid, *_children(pid)]
    assert len(victims) > 1  # checkpointer, walwriter, ...
    for victim in victims:
        os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not all(_is_gone(v) for v in victims):
        assert time.monotonic() < deadline, "killed postgres processes did not go away"
        time.sleep(0.05)
    assert (cluster.status().data_dir / "postmaster.pid").exists()
    assert not cluster.status().running

    url = cluster.start()
    assert _fetchval(url, "SELECT 1") == 1
    assert cluster.status().pid not in (None, pid)


def test_start_picks_another_port_when_recorded_one_is_taken(
    cluster: EmbeddedPostgres,
) -> None:
    cluster.start()
    old_port = cluster.status().port
    assert old_port is not None
    cluster.stop()
    with socket.socket() as squatter:
        # SO_REUSEADDR: the old server's closed connections may leave the port in TIME_WAIT.
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", old_port))
        squatter.listen()
        url = cluster.start()
        new_port = cluster.status().port
        assert new_port not in (None, old_port)
        assert f":{new_port}/" in url
        assert _fetchval(url, "SELECT 1") == 1
    assert (cluster.root / "port").read_text().strip() == str(new_port)


def test_failed_start_names_log_and_reason(cluster: EmbeddedPostgres) -> None:
    cluster.stop()
    conf = cluster.status().data_dir / "postgresql.conf"
    original = conf.read_text()
    conf.write_text(original + "\nmax_connections = 'lots'\n")
    try:
        with pytest.raises(EmbeddedPostgresError) as caught:
            cluster.start()
    finally:
        conf.write_text(original)
    message = str(caught.value)
    assert "\n" not in message
    assert "postgres.log" in message
    assert "max_connections" in message
    assert _fetchval(cluster.start(), "SELECT 1") == 1


def test_layout_keeps_data_reachable_by_the_server(cluster: EmbeddedPostgres) -> None:
    cluster.start()
    status = cluster.status()
    assert status.pid is not None
    if not IS_ROOT:
        assert status.data_dir == cluster.root / "data"
        assert not (cluster.root / "location").exists()
        return
    # Root: the checkout sits in a 0700 home the service user cannot enter, so data lives elsewhere.
    home = cluster.root.parents[2]
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    base = status.data_dir.parent
    assert base.parent == ROOT_MODE_BASE
    assert (cluster.root / "location").read_text().strip() == str(base)
    assert stat.S_IMODE(base.stat().st_mode) == 0o700
    server_uid = Path(f"/proc/{status.pid}").stat().st_uid
    assert server_uid != 0
    assert base.stat().st_uid == server_uid
    assert pwd.getpwuid(server_uid).pw_name in ("postgres", "userapi-pg")
    probe = subprocess.run(["test", "-x", str(home)], user=server_uid, check=False)
    assert probe.returncode != 0, "the simulated private home should be unreachable for the server"


def test_concurrent_starts_on_a_fresh_root_agree(
    make_cluster: Callable[[], EmbeddedPostgres],
) -> None:
    pg = make_cluster()
    code = (
        "import sys; from pathlib import Path; from userapi.db.embedded import EmbeddedPostgres;"
        "print(EmbeddedPostgres(Path(sys.argv[1])).start())"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(pg.root)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    urls = [proc.communicate(timeout=120)[0].strip() for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0]
    assert urls[0] == urls[1] == pg.url()
    assert _fetchval(urls[0], "SELECT 1") == 1


def test_find_server_bindir_finds_the_server_tools() -> None:
    bindir = find_server_bindir()
    assert bindir is not None
    for tool in ("initdb", "pg_ctl", "postgres"):
        assert os.access(bindir / tool, os.X_OK), tool
    assert ensure_server_binaries() == bindir


def test_wiping_the_project_data_gives_a_fresh_cluster(
    make_cluster: Callable[[], EmbeddedPostgres],
) -> None:
    pg = make_cluster()
    old_url = pg.start()
    old_status = pg.status()
    if not IS_ROOT:
        pg.stop()  # the data lives inside root: wiping it under a running server is not a case to handle
    shutil.rmtree(pg.root)  # e.g. `git clean -fdx` or `rm -rf .data`
    url = pg.start()
    assert url != old_url  # new password
    assert _fetchval(url, "SELECT 1") == 1
    assert old_status.pid is not None
    assert _is_gone(old_status.pid)
