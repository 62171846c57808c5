"""compose.yaml and deploy/nginx.conf, checked by their structure: no Docker engine runs the tests.

The file is read as compose reads it (YAML with merge keys, then `${...}` interpolation from .env),
and each check is against the real code where there is one: the `userapi` commands against the Typer
CLI, the environment against `Settings`, the proxy set-up against the app's X-Forwarded-For rules.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from sqlalchemy.engine import make_url

from tests.fixtures.compose import (
    COMPOSE_FILE,
    CONTAINER_PORT,
    DOCKERFILE,
    IMAGE_ENV,
    NGINX_CONF,
    REQUIRED_ENV,
    REQUIRED_INTERPOLATION,
    SAMPLE_ENV,
    SECRET_KEY,
    URL_USERINFO,
    MissingVariableError,
    argv_of,
    cli_problems,
    container_ports,
    depends_of,
    env_of,
    networks_of,
    resolve,
    scale_profile,
    shell_words,
    userapi_invocations,
    userapi_services,
)
from userapi.core.config import Environment, Settings, to_async_url


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any]) -> dict[str, Any]:
    resolved: dict[str, Any] = resolve(raw, SAMPLE_ENV)
    return resolved


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = compose["services"]
    return found


def test_db_is_postgres_with_a_tcp_readiness_check_and_a_named_volume(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    db = services["db"]
    image, _, tag = db["image"].partition(":")
    assert image == "postgres"
    version = re.match(r"\d+", tag)
    assert version, "pin the PostgreSQL major version"
    major = int(version[0])
    assert major >= 16
    check = " ".join(argv_of(db["healthcheck"]["test"]))
    # TCP, not the socket: the image's init-time server listens on the socket only.
    assert "pg_isready" in check
    assert "-h 127.0.0.1" in check
    source, target = db["volumes"][0].split(":")[:2]
    assert source in compose["volumes"], "the data volume must be a named volume"
    # The image moved PGDATA up one level in 18: a bump without this change loses the data on restart.
    assert target == ("/var/lib/postgresql/data" if major < 18 else "/var/lib/postgresql")


def test_migrate_runs_once_after_the_database_is_healthy(services: dict[str, Any]) -> None:
    migrate = services["migrate"]
    assert "build" in migrate
    assert userapi_invocations(argv_of(migrate["command"])) == [["migrate"]]
    assert depends_of(migrate)["db"] == "service_healthy"
    # Quoted in YAML: a bare `no` is the boolean false, which compose rejects.
    assert migrate["restart"] == "no"


def test_every_server_starts_only_after_migrate_succeeded(services: dict[str, Any]) -> None:
    servers = {name for name in userapi_services(services) if name != "migrate"}
    assert {"api", "api-replica"} <= servers
    for name in servers:
        assert depends_of(services[name]).get("migrate") == "service_completed_successfully", name


def test_api_is_published_and_health_checked_without_a_profile(services: dict[str, Any]) -> None:
    api = services["api"]
    assert "profiles" not in api, "`docker compose up` must start the api"
    assert container_ports(api) == {CONTAINER_PORT}
    env = env_of(api)
    assert (env["HOST"], env["PORT"]) == ("0.0.0.0", str(CONTAINER_PORT))
    assert "/health/live" in " ".join(argv_of(api["healthcheck"]["test"]))
    assert api["healthcheck"]["test"][0] == "CMD"


def test_every_userapi_command_in_compose_exists_in_the_cli(services: dict[str, Any]) -> None:
    invocations = [
        args
        for service in services.values()
        for key in ("command", "entrypoint")
        if service.get(key)
        for args in userapi_invocations(argv_of(service[key]))
    ]
    assert ["migrate"] in invocations
    for args in invocations:
        assert cli_problems(args) == []


def test_cli_check_refuses_unknown_commands_and_options() -> None:
    assert cli_problems(["serve", "--workers", "2"]) == []
    assert cli_problems(["db", "history"]) == []
    assert cli_problems(["downgrade", "--revision", "-1"]) == []
    assert cli_problems(["migrate-all"])
    assert cli_problems(["serve", "--threads=2"])
    assert cli_problems(["db"])
    script = "userapi migrate && exec userapi serve"
    assert userapi_invocations(["sh", "-c", script]) == [["migrate"], ["serve"]]
    assert userapi_invocations(shell_words("useradd --uid 10001 userapi")) == []


def test_no_secret_is_written_in_the_file(raw: dict[str, Any]) -> None:
    checked_keys: set[str] = set()
    checked_urls: list[str] = []

    def walk(node: Any) -> None:
        pairs: list[tuple[str, Any]] = []
        if isinstance(node, dict):
            pairs = [(str(key), value) for key, value in node.items()]
        elif isinstance(node, list):
            pairs = [item.partition("=")[::2] for item in node if isinstance(item, str) and "=" in item]
            for item in node:
                walk(item)
        for key, value in pairs:
            if SECRET_KEY.search(key) and not isinstance(value, dict | list):
                assert REQUIRED_INTERPOLATION.fullmatch(str(value)), f"{key} holds a literal: {value!r}"
                checked_keys.add(key)
            if isinstance(value, str) and (userinfo := URL_USERINFO.search(value)):
                assert REQUIRED_INTERPOLATION.fullmatch(userinfo["password"]), f"{key}: password in a URL"
                checked_urls.append(key)
            if isinstance(value, dict | list):
                walk(value)

    walk(raw)
    assert {"POSTGRES_PASSWORD", "JWT_SECRET"} <= checked_keys
    assert "DATABASE_URL" in checked_urls


def test_required_variables_are_named_in_the_header_and_enforced(raw: dict[str, Any]) -> None:
    values = yaml.safe_dump(raw, width=1 << 20)  # the values only, not the comments
    assert set(re.findall(r"\$\{(\w+):\?", values)) == REQUIRED_ENV
    header = COMPOSE_FILE.read_text().split("\nservices:", 1)[0]
    for name in REQUIRED_ENV:
        assert re.search(rf"^#\s+{name}=", header, re.MULTILINE), f"the header does not say to set {name}"
        for value in (None, ""):
            env = {k: v for k, v in SAMPLE_ENV.items() if k != name}
            if value is not None:
                env[name] = value
            with pytest.raises(MissingVariableError, match=name):
                resolve(raw, env)


def test_database_url_reaches_the_db_service_with_its_credentials(services: dict[str, Any]) -> None:
    db = env_of(services["db"])
    for name, service in userapi_services(services).items():
        url = make_url(env_of(service)["DATABASE_URL"])
        assert (url.host, url.port or 5432) == ("db", 5432), name
        assert (url.username, url.password, url.database) == (
            db["POSTGRES_USER"],
            db["POSTGRES_PASSWORD"],
            db["POSTGRES_DB"],
        ), name
        assert to_async_url(url.render_as_string(hide_password=False)).startswith("postgresql+asyncpg://")


def test_userapi_services_set_only_variables_the_app_reads(services: dict[str, Any]) -> None:
    fields = {name.upper() for name in Settings.model_fields}
    dockerfile = DOCKERFILE.read_text()
    for name in IMAGE_ENV:
        assert f"${{{name}" in dockerfile, f"{name} is allowed in compose but the image does not read it"
    for name, service in userapi_services(services).items():
        unknown = {key.upper() for key in env_of(service)} - fields - IMAGE_ENV
        assert not unknown, f"{name} sets variables that are no Settings field: {sorted(unknown)}"


def test_userapi_services_environment_makes_valid_production_settings(services: dict[str, Any]) -> None:
    fields = set(Settings.model_fields)
    for name, service in userapi_services(services).items():
        values = {key.lower(): value for key, value in env_of(service).items() if key.lower() in fields}
        settings = Settings.model_validate(values)  # the values alone: no environment, no .env
        assert settings.environment is Environment.production, name
        assert settings.jwt_secret.get_secret_value() == SAMPLE_ENV["JWT_SECRET"], name


def test_scale_profile_runs_replicas_behind_nginx_with_shared_counters(services: dict[str, Any]) -> None:
    scale = scale_profile(services)
    replica = services["api-replica"]
    assert "api-replica" in scale
    assert int(replica["deploy"]["replicas"]) >= 2
    assert "ports" not in replica, "replicas are reached through the proxy only"
    redis_url = urlsplit(env_of(replica)["RATE_LIMIT_STORAGE_URL"])
    assert redis_url.scheme == "redis"
    assert redis_url.hostname in scale
    assert scale[redis_url.hostname]["image"].startswith("redis:")
    assert depends_of(replica)[redis_url.hostname] == "service_healthy"

    proxy = services["proxy"]
    assert "proxy" in scale
    assert proxy["image"].startswith("nginx:")
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in proxy["volumes"]
    assert depends_of(proxy)["api-replica"] == "service_healthy"


def _nginx_conf() -> str:
    return "\n".join(line.split("#", 1)[0] for line in NGINX_CONF.read_text().splitlines())


def test_nginx_appends_the_peer_to_x_forwarded_for_and_proxies_to_the_replicas(
    services: dict[str, Any],
) -> None:
    conf = _nginx_conf()
    assert re.search(r"proxy_set_header\s+X-Forwarded-For\s+\$proxy_add_x_forwarded_for\s*;", conf)
    assert "$http_x_forwarded_for" not in conf, "passing the client's header on unchanged lets it be forged"
    upstream = re.search(r"upstream\s+(\w+)\s*\{(.*?)\}", conf, re.DOTALL)
    assert upstream
    assert re.search(rf"proxy_pass\s+http://{upstream[1]}\s*;", conf)
    servers = re.findall(r"^\s*server\s+([\w.-]+):(\d+)", upstream[2], re.MULTILINE)
    assert servers == [("api-replica", str(CONTAINER_PORT))]
    listen = re.search(r"^\s*listen\s+(\d+)", conf, re.MULTILINE)
    assert listen
    assert container_ports(services["proxy"]) == {int(listen[1])}


def test_replicas_trust_exactly_the_network_they_share_with_nginx(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    replica, proxy = services["api-replica"], services["proxy"]
    trusted = [ipaddress.ip_network(part.strip()) for part in env_of(replica)["TRUSTED_PROXIES"].split(",")]
    shared = networks_of(proxy) & networks_of(replica)
    assert shared
    assert networks_of(proxy) == shared, "nginx must reach the replicas from inside the trusted subnet"
    subnets = [
        ipaddress.ip_network(pool["subnet"])
        for network in shared
        for pool in compose["networks"][network]["ipam"]["config"]
    ]
    assert sorted(subnets) == sorted(trusted)
    # Any other member of that network could send a forged X-Forwarded-For and be believed.
    members = {name for name, service in services.items() if networks_of(service) & shared}
    assert members == {"proxy", "api-replica"}


def test_the_api_sends_mail_to_mailpit_whose_inbox_is_published(services: dict[str, Any]) -> None:
    for name in ("api", "api-replica"):
        smtp = urlsplit(env_of(services[name])["SMTP_URL"])
        assert smtp.scheme == "smtp", name
        mailpit = services[smtp.hostname or ""]
        assert mailpit["image"].startswith("axllent/mailpit:"), name
        assert re.match(r"axllent/mailpit:v\d+\.\d+", mailpit["image"]), "pin the Mailpit version"
        assert smtp.port == 1025, "Mailpit's SMTP port"
        assert networks_of(mailpit) & networks_of(services[name]), name
    assert depends_of(services["api"])["mailpit"] == "service_started"
    assert "profiles" not in services["mailpit"], "`docker compose up` starts it"
    assert container_ports(services["mailpit"]) == {8025}  # the web inbox; SMTP stays internal
    public = urlsplit(env_of(services["api"])["PUBLIC_URL"])
    assert public.scheme in ("http", "https")
    assert public.hostname
