"""The Dockerfile and docker-compose.yml, checked without a container engine (none runs on
the machines that test this): the Dockerfile parses, builds with deploy/build.sh from files
that exist, runs as a non-root user with a health check; the compose file is valid by the
Compose Specification's schema, mounts files that exist, and its Warden config loads and
agrees with the ports, hosts and deadlines around it."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import orjson
import pytest
from dockerfile_parse import DockerfileParser

from tests.deploy_support import (
    DEPLOY,
    ROOT,
    SCHEMAS,
    assert_warden_command,
    drain_seconds,
    load_yaml,
)
from warden.config.units import parse_duration
from warden.settings import load_settings

COMPOSE = load_yaml(ROOT / "docker-compose.yml")
SERVICES = COMPOSE["services"]


def stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions (name, value), stage by stage (the first: before FROM)."""
    found: list[list[tuple[str, str]]] = [[]]
    for item in DockerfileParser(path=str(ROOT / "Dockerfile")).structure:
        if item["instruction"] == "FROM":
            found.append([])
        if item["instruction"] != "COMMENT":
            found[-1].append((item["instruction"], item["value"]))
    return found


def values(stage: list[tuple[str, str]], instruction: str) -> list[str]:
    return [value for name, value in stage if name == instruction]


def exec_form(value: str) -> list[str]:
    assert value.startswith("["), f"not in exec form (no shell in between): {value}"
    return json.loads(value)


def test_the_dockerfile_has_a_builder_and_a_runtime_stage():
    _, builder, runtime = stages()
    assert values(builder, "FROM")[0].endswith(" AS builder")
    assert values(builder, "RUN") == ["deploy/build.sh /opt/warden"]
    assert values(runtime, "COPY") == ["--from=builder /opt/warden /opt/warden"]
    assert not any("gcc" in run or "build-essential" in run for run in values(runtime, "RUN"))
    # The same Python in both (the virtualenv's interpreter is a link to it).
    assert [v.split(":")[1].split("-")[0] for v in (values(builder, "FROM")[0],
                                                    values(runtime, "FROM")[0])] == \
        ["${PYTHON_VERSION}"] * 2


def test_every_file_the_dockerfile_copies_exists_and_is_sent():
    ignored = [line for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line and not line.startswith("#")]
    sources = []
    for stage in stages():
        for value in values(stage, "COPY"):
            if not value.startswith("--from="):
                sources += shlex.split(value)[:-1]
    assert "deploy/build.sh" in sources and "warden/" in sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not any(fnmatch.fnmatch(source.rstrip("/"), p) for p in ignored), source


def test_the_build_script_compiles_and_checks_it():
    script = (DEPLOY / "build.sh").read_text()
    assert (DEPLOY / "build.sh").stat().st_mode & 0o111, "deploy/build.sh is not executable"
    assert "WARDEN_COMPILE=1" in script and "data path compiled" in script
    assert "set -euo pipefail" in script
    assert "deploy/build.sh" in (ROOT / ".ci" / "run").read_text()  # CI builds it too


def test_the_image_runs_warden_as_a_non_root_user_with_a_health_check():
    runtime = stages()[-1]
    user = values(runtime, "USER")[-1].split(":")[0]
    assert user not in ("root", "0") and int(user) >= 1000
    assert [s for s in values(runtime, "RUN") if f"--uid {user}" in s]
    [check] = values(runtime, "HEALTHCHECK")
    command = exec_form(check.split("CMD", 1)[1].strip())
    assert command[:2] == ["python3", "-c"] and "WARDEN_HEALTH_URL" in command[2]
    env = " ".join(values(runtime, "ENV"))
    health = re.search(r"WARDEN_HEALTH_URL=http://127\.0\.0\.1:(\d+)/health\b", env)
    assert health and values(runtime, "EXPOSE") == [health.group(1)]
    assert "PATH=/opt/warden/bin:" in env  # python3 and warden: the virtualenv's
    assert exec_form(values(runtime, "ENTRYPOINT")[0]) == ["warden"]
    assert_warden_command(exec_form(values(runtime, "CMD")[0]))


def test_the_compose_file_is_valid_by_the_compose_schema():
    schema = orjson.loads((SCHEMAS / "compose-spec.json").read_bytes())
    validator = jsonschema.Draft7Validator(schema)
    assert [e.message for e in validator.iter_errors(COMPOSE)] == []
    typo = {**COMPOSE, "services": {**SERVICES, "redis": {**SERVICES["redis"], "helthcheck": {}}}}
    assert list(validator.iter_errors(typo)), "the schema check would not see a typo"


def test_the_compose_file_has_every_part():
    assert set(SERVICES) == {"warden", "sim", "redis", "postgres", "prometheus", "grafana"}
    for name in ("warden", "sim"):  # Warden's own image, built here
        assert SERVICES[name]["build"]["context"] == "." and SERVICES[name]["image"] == \
            SERVICES["warden"]["image"]
        assert_warden_command(SERVICES[name]["command"])


def bind_mounts() -> list[tuple[str, str, str]]:
    """(service, file in the repository, path in the container) of every bind mount."""
    found = []
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("./"):
                found.append((name, source[2:], target))
    return found


def test_every_mounted_file_exists():
    mounts = bind_mounts()
    assert ("grafana", "deploy/grafana/warden.json", "/var/lib/grafana/dashboards/warden.json") \
        in mounts
    for _, source, _ in mounts:
        assert (ROOT / source).exists(), source
    orjson.loads((ROOT / "deploy/grafana/warden.json").read_bytes())


def mounted(service: str, target: str) -> Path:
    [source] = [s for name, s, t in bind_mounts() if name == service and t == target]
    return ROOT / source


def compose_settings():
    warden = SERVICES["warden"]
    environ = {name: re.sub(r"\$\{\w+:-(.*)\}", r"\1", value)
               for name, value in warden["environment"].items()}
    return load_settings(mounted("warden", "/etc/warden/warden.yaml"), environ)


def test_the_compose_warden_config_loads_and_fits_the_services():
    settings = compose_settings()
    host, port = settings.listen
    assert host == "0.0.0.0"
    assert SERVICES["warden"]["ports"] == [f"{port}:{port}"]
    # Its backends are the sim service's nodes, on the ports the sim command gives them.
    command = SERVICES["sim"]["command"]
    first, nodes = (int(command[command.index(flag) + 1]) for flag in ("--port", "--nodes"))
    assert [b.url for b in settings.backends] == \
        [f"http://sim:{first + n}" for n in range(nodes)]
    assert SERVICES["sim"]["environment"]["WARDEN_HEALTH_URL"] == \
        f"http://127.0.0.1:{first}/health"
    # Redis and PostgreSQL: the compose services, with what the gateway waits for.
    assert settings.guard.quarantine.store == settings.rate_limits.store == "redis"
    for url in (settings.rate_limits.redis_url, settings.guard.quarantine.redis_url):
        assert (urlsplit(url).hostname, urlsplit(url).port) == ("redis", 6379)
    dsn = urlsplit(settings.recorder.postgres.dsn)
    assert (dsn.hostname, dsn.port, dsn.path) == ("postgres", 5432, "/warden")
    assert dsn.username == SERVICES["postgres"]["environment"]["POSTGRES_USER"]
    assert set(SERVICES["warden"]["depends_on"]) == {"sim", "redis", "postgres"}
    # Its records in the volume the image prepared for them.
    assert f"records:{settings.recorder.dir}" in SERVICES["warden"]["volumes"]
    assert parse_duration(SERVICES["warden"]["stop_grace_period"]) > drain_seconds(settings)


def test_prometheus_scrapes_what_compose_runs_and_loads_the_alerts():
    config = load_yaml(mounted("prometheus", "/etc/prometheus/prometheus.yml"))
    jobs = {job["job_name"]: job["static_configs"][0]["targets"]
            for job in config["scrape_configs"]}
    settings = compose_settings()
    assert jobs["warden"] == [f"warden:{settings.listen[1]}"]
    assert jobs["vllm"] == [b.url.removeprefix("http://") for b in settings.backends]
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    alerts = load_yaml(mounted("prometheus", "/etc/prometheus/alerts.yml"))
    rules = [rule for group in alerts["groups"] for rule in group["rules"]]
    assert rules and all(rule.get("alert") and rule.get("expr") for rule in rules)


def test_grafana_is_given_prometheus_and_the_dashboard():
    provisioning = "/etc/grafana/provisioning/"
    datasources = load_yaml(mounted("grafana", provisioning + "datasources") / "prometheus.yml")
    [source] = datasources["datasources"]
    port = SERVICES["prometheus"]["ports"][0].split(":")[1]
    assert source["type"] == "prometheus" and source["url"] == f"http://prometheus:{port}"
    providers = load_yaml(mounted("grafana", provisioning + "dashboards") / "warden.yml")
    [provider] = providers["providers"]
    dashboard = mounted("grafana", provider["options"]["path"] + "/warden.json")
    assert dashboard == ROOT / "deploy" / "grafana" / "warden.json"


@pytest.mark.parametrize("service", ["redis", "postgres"])
def test_the_gateway_waits_for_its_stores_to_be_healthy(service):
    assert SERVICES["warden"]["depends_on"][service] == {"condition": "service_healthy"}
    assert SERVICES[service]["healthcheck"]["test"][0] == "CMD"
