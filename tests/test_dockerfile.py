"""The Dockerfile and .dockerignore, checked by their content (no Docker engine runs the tests).

Where a line is a program (the health check, the start command) it is run here for real, against a
throw-away HTTP server or a stand-in `userapi`, so the check is of behaviour, not of spelling.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from tests.fixtures.compose import (
    COMPOSE_FILE,
    CONTAINER_PORT,
    DOCKERFILE,
    IMAGE_ENV,
    ROOT,
    cli_problems,
    shell_words,
    userapi_invocations,
)
from userapi.core.config import Environment, Settings

DOCKERIGNORE = ROOT / ".dockerignore"


@dataclass
class Stage:
    image: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [rest for kw, rest in self.instructions if kw == keyword]

    def expand(self, text: str) -> str:
        """`${NAME}` replaced by the default of the stage's `ARG NAME=default`."""
        args = dict(arg.partition("=")[::2] for arg in self.all("ARG"))
        return re.sub(r"\$\{(\w+)\}", lambda m: args.get(m[1], m[0]), text)

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for rest in self.all("ENV"):
            words = shell_words(rest)
            if words and "=" not in words[0]:  # the old `ENV NAME value` form
                values[words[0]] = " ".join(words[1:])
                continue
            values.update(word.split("=", 1) for word in words)  # type: ignore[misc]
        return values


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) for each instruction, continuation lines joined, comments dropped."""
    found: list[tuple[str, str]] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        keyword, _, rest = current.partition(" ")
        found.append((keyword.upper(), rest.strip()))
        current = ""
    return found


def parse_stages(text: str) -> list[Stage]:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for keyword, rest in instructions(text):
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            global_args[name] = default
        elif keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            image = re.sub(r"\$\{(\w+)\}", lambda m: global_args[m[1]], words[0])
            name = words[2] if len(words) > 2 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(image, name))
        elif stages:
            stages[-1].instructions.append((keyword, rest))
    return stages


def exec_form(rest: str) -> list[str]:
    """The argv of a CMD/ENTRYPOINT/HEALTHCHECK CMD: JSON (exec form) or a shell line."""
    return json.loads(rest) if rest.lstrip().startswith("[") else ["/bin/sh", "-c", rest]


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_stages(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def runtime(stages: list[Stage]) -> Stage:
    return stages[-1]


def test_builds_in_stages_with_uv_from_the_lock(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    builder, runtime = stages[0], stages[-1]
    runs = [builder.expand(run) for run in builder.all("RUN")]
    assert any(re.search(r"pip install .*[\"']?uv==\d+\.\d+\.\d+", run) for run in runs), "pin uv"
    syncs = [run for run in runs if "uv sync" in run]
    assert syncs
    for run in syncs:
        assert "--mount=type=cache,target=/root/.cache/uv" in run
        assert {"--frozen", "--no-dev", "--no-editable"} <= set(run.split())
    assert "--no-install-project" not in syncs[-1], "the last sync must install the project itself"
    assert builder.env()["UV_PROJECT_ENVIRONMENT"] == "/app/.venv"
    assert not any("uv" in run or "pip install" in run for run in runtime.all("RUN")), "no uv at run time"


def test_runtime_is_the_builders_slim_python_with_only_the_venv(stages: list[Stage], runtime: Stage) -> None:
    # The venv's python is a symlink to the base image's interpreter: both stages need the same one.
    assert runtime.image == stages[0].image
    assert re.fullmatch(r"python:3\.1[1-9][\w.]*-slim[\w.-]*", runtime.image)
    copies = runtime.all("COPY")
    assert copies
    assert all(copy.startswith(f"--from={stages[0].name} ") for copy in copies), "only the build output"
    assert any(copy.split()[-2:] == ["/app/.venv", "/app/.venv"] for copy in copies)
    assert runtime.env()["PATH"].startswith("/app/.venv/bin:")


def test_runs_as_an_unprivileged_fixed_uid(runtime: Stage) -> None:
    users = runtime.all("USER")
    assert users
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert user == "10001"
    assert any("--uid 10001" in run for run in runtime.all("RUN"))


def test_production_defaults_and_the_exposed_port(runtime: Stage) -> None:
    env = runtime.env()
    assert Environment(env["ENVIRONMENT"]) is Environment.production
    assert env["HOST"] == "0.0.0.0"
    assert runtime.all("EXPOSE") == [env["PORT"]] == [str(CONTAINER_PORT)]
    fields = {name.upper() for name in Settings.model_fields}
    assert {"ENVIRONMENT", "HOST", "PORT"} <= fields
    assert set(env) >= IMAGE_ENV, "the image documents its own variables with a default"


def _healthcheck_code(source: str, runtime: Stage) -> str:
    if source == "dockerfile":
        [check] = runtime.all("HEALTHCHECK")
        match = re.fullmatch(r"((?:--[\w-]+=\S+\s+)*)CMD\s+(.*)", check, re.DOTALL)
        assert match
        argv = exec_form(match[2])
    else:
        argv = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["api"]["healthcheck"]["test"][1:]
    assert argv[:2] == ["python", "-c"], "slim images have no curl: the probe is Python"
    assert "/health/live" in argv[2]
    return str(argv[2])


class _Health:
    status = 200


@pytest.fixture
def health_server() -> Iterator[tuple[int, type[_Health]]]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(_Health.status if self.path == "/health/live" else 404)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], _Health
    finally:
        server.shutdown()
        server.server_close()
        _Health.status = 200


@pytest.mark.parametrize("source", ["dockerfile", "compose"])
def test_healthcheck_passes_only_while_liveness_answers_2xx(
    source: str, runtime: Stage, health_server: tuple[int, type[_Health]]
) -> None:
    code = _healthcheck_code(source, runtime)
    port, health = health_server

    def probe() -> int:
        env = {"PORT": str(port), "PATH": "/usr/bin:/bin"}
        return subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, timeout=30
        ).returncode

    assert probe() == 0
    health.status = 503
    assert probe() != 0


def test_cmd_is_userapi_serve_as_pid_1_with_the_configured_workers(runtime: Stage, tmp_path: Path) -> None:
    assert not runtime.all("ENTRYPOINT"), "compose and `docker run IMAGE userapi migrate` give whole commands"
    [cmd] = runtime.all("CMD")
    argv = exec_form(cmd)
    invocations = userapi_invocations(argv)
    assert [args[0] for args in invocations] == ["serve"]
    assert cli_problems(invocations[0]) == []

    stand_in = tmp_path / "userapi"
    stand_in.write_text('#!/bin/sh\necho "$$ $*"\n')
    stand_in.chmod(0o755)
    for workers, expected in ((None, "1"), ("3", "3")):
        env = {"PATH": f"{tmp_path}:/usr/bin:/bin"} | ({"WEB_CONCURRENCY": workers} if workers else {})
        with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True) as proc:
            out, _ = proc.communicate(timeout=30)
        # The same pid: the shell exec'd userapi, which therefore gets `docker stop`'s SIGTERM.
        assert out.split() == [str(proc.pid), "serve", "--workers", expected]


def test_every_userapi_command_in_the_dockerfile_exists_in_the_cli(stages: list[Stage]) -> None:
    lines = [
        exec_form(rest) if keyword in {"CMD", "ENTRYPOINT"} else ["/bin/sh", "-c", rest]
        for stage in stages
        for keyword, rest in stage.instructions
        if keyword in {"CMD", "ENTRYPOINT", "RUN"}
    ]
    invocations = [args for argv in lines for args in userapi_invocations(argv)]
    assert invocations
    for args in invocations:
        assert cli_problems(args) == []


def _glob(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex (Go's filepath.Match plus `**`)."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[" and "]" in pattern[i:]:
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def excluded_from_context(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _glob(pattern.removeprefix("!").strip().strip("/"))
        if any(regex.fullmatch(candidate) for candidate in candidates):
            excluded = not negated
    return excluded


@pytest.fixture(scope="module")
def ignore_patterns() -> list[str]:
    lines = (line.strip() for line in DOCKERIGNORE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def test_dockerignore_keeps_secrets_and_host_files_out(ignore_patterns: list[str]) -> None:
    for path in (
        ".env",
        ".env.production",
        ".venv/bin/python",
        ".git/HEAD",
        ".data/postgres/PG_VERSION",
        ".tools/bin/uv",
        "tests/conftest.py",
        "src/userapi/__pycache__/main.cpython-311.pyc",
        "src/userapi/main.pyc",
    ):
        assert excluded_from_context(path, ignore_patterns), f"{path} would be sent to the build"


def test_dockerignore_lets_in_everything_the_build_copies(
    stages: list[Stage], ignore_patterns: list[str]
) -> None:
    sources = [
        source
        for stage in stages
        for copy in stage.all("COPY")
        if not copy.startswith("--from=")
        for source in copy.split()[:-1]
        if not source.startswith("--")
    ]
    assert {"pyproject.toml", "uv.lock", "src"} <= set(sources)
    for source in sources:
        path = ROOT / source
        assert path.exists(), f"COPY {source}: no such file"
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
        for file in files:
            relative = file.relative_to(ROOT).as_posix()
            if "__pycache__" in relative:
                continue
            assert not excluded_from_context(relative, ignore_patterns), (
                f"{relative} is left out of the build"
            )


def test_dockerignore_rule_follows_docker_semantics() -> None:
    patterns = ["*", "!src/", "**/__pycache__"]
    assert excluded_from_context(".env", patterns)
    assert not excluded_from_context("src/userapi/main.py", patterns)
    assert excluded_from_context("src/userapi/__pycache__/main.pyc", patterns)
    assert not excluded_from_context("README.md", ["*", "!README.md"])
