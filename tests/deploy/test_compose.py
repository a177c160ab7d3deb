"""docker-compose.yml: valid against the Compose Specification and wired as documented."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from tests.deploy._support import DEPLOY, ROOT, SCHEMAS, module

COMPOSE = ROOT / "docker-compose.yml"
SERVICES = {"capture": 8001, "scoring": 8002, "nurture": 8003, "router": 8004, "insights": 8005}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def test_compose_file_matches_the_compose_specification_schema(compose: dict[str, Any]) -> None:
    jsonschema = module("jsonschema")
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text(encoding="utf-8"))
    validator_class = jsonschema.Draft201909Validator
    validator_class.check_schema(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in errors
    )


def test_the_schema_catches_a_misspelt_key(compose: dict[str, Any]) -> None:
    """Guards the guard: a typo in a service must not validate."""
    jsonschema = module("jsonschema")
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text(encoding="utf-8"))
    broken = json.loads(json.dumps(compose))
    broken["services"]["capture"]["healthchek"] = broken["services"]["capture"].pop("healthcheck")
    assert not jsonschema.Draft201909Validator(schema).is_valid(broken)


def test_kafka_runs_single_node_kraft_with_a_healthcheck(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert not any("zookeeper" in name for name in services)
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert kafka["image"].split(":", 1)[1] not in ("", "latest")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert "CONTROLLER" in env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"]), "CLUSTER_ID: base64url UUID"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert kafka["healthcheck"]["test"]


def test_postgres_16_with_a_healthcheck(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]
    assert postgres["image"].startswith("postgres:16")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert postgres["environment"]["POSTGRES_DB"] == "leadflow"


def test_migrate_runs_once_before_the_services(compose: dict[str, Any]) -> None:
    migrate = compose["services"]["migrate"]
    command = " ".join(migrate["command"])
    assert "leadflow migrate" in command and "leadflow topics create" in command
    assert command.index("leadflow migrate") < command.index("leadflow topics create")
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"


@pytest.mark.parametrize(("name", "port"), SERVICES.items())
def test_each_service_is_built_from_the_root_dockerfile_and_wired(
    compose: dict[str, Any], name: str, port: int
) -> None:
    service = compose["services"][name]
    assert service["build"]["context"] == "."
    assert service["build"].get("dockerfile", "Dockerfile") == "Dockerfile"
    assert service["command"] == ["leadflow", "serve", name]
    assert any(str(p).endswith(f":{port}:{port}") for p in service["ports"])

    check = service["healthcheck"]["test"]
    assert check[0] == "CMD" and check[1] == "python", "healthcheck must not assume curl"
    assert f"http://127.0.0.1:{port}/healthz" in check[-1] and "urllib" in check[-1]

    depends = service["depends_on"]
    assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert depends["kafka"]["condition"] == "service_healthy"
    assert depends["postgres"]["condition"] == "service_healthy"

    env = service["environment"]
    assert env["LEADFLOW_HOST"] == "0.0.0.0"
    assert env["LEADFLOW_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert env["LEADFLOW_KAFKA_ENABLE_IDEMPOTENCE"] == "true"
    assert env["LEADFLOW_ENV"] == "production"
    assert env["LEADFLOW_DATABASE_URL"].startswith("postgresql+asyncpg://leadflow:")
    assert env["LEADFLOW_DATABASE_URL"].endswith("@postgres:5432/leadflow")
    assert env["LEADFLOW_SECRET_KEY"].startswith("${LEADFLOW_SECRET_KEY"), (
        "the secret comes from the environment"
    )
    assert env["LEADFLOW_CONFIG"] == "/etc/leadflow/leadflow.yaml"


def test_every_long_running_container_has_a_healthcheck(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if name == "migrate":
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_every_image_is_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service.get("image", "")
        if "build" in service:
            continue
        tag = image.rpartition(":")[2] if ":" in image else ""
        assert tag and tag != "latest", f"{name}: pin the image tag ({image!r})"


def test_prometheus_and_grafana_load_the_deploy_files(compose: dict[str, Any]) -> None:
    prometheus = compose["services"]["prometheus"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]

    grafana = compose["services"]["grafana"]
    mounts = {m.split(":")[0]: m.split(":")[1] for m in grafana["volumes"]}
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    dashboards_dir = mounts["./deploy/grafana/dashboards"]
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "leadflow.yml").read_text(
            encoding="utf-8"
        )
    )
    assert provider["providers"][0]["options"]["path"] == dashboards_dir
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{dashboards_dir}/leadflow.json"
    assert grafana["depends_on"]["prometheus"]["condition"] == "service_healthy"


def test_bind_mounts_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            source = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", source)
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"


def test_variable_references_are_well_formed() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    for reference in re.findall(r"\$\{[^}]*\}?", text):
        assert re.fullmatch(r"\$\{[A-Z][A-Z0-9_]*(:?[-?][^}]*)?\}", reference), reference


def _console_url_variables() -> dict[str, str]:
    """`LEADFLOW_<SERVICE>_URL` → service, from the console's own settings."""
    from services.insights.console.auth import ConsoleSettings

    return {
        f"LEADFLOW_{field.upper()}": field.removesuffix("_url")
        for field in ConsoleSettings.model_fields
        if field.endswith("_url")
    }


def test_the_console_reaches_the_other_services_and_its_users(compose: dict[str, Any]) -> None:
    services = compose["services"]
    env = services["insights"]["environment"]
    urls = _console_url_variables()
    assert set(urls.values()) == set(SERVICES) - {"insights"}
    for variable, service in urls.items():
        assert env[variable] == f"http://{service}:{SERVICES[service]}", variable
    for variable in ("LEADFLOW_CONSOLE_PASSWORD", "LEADFLOW_CONSOLE_USERS"):
        assert env[variable] == f"${{{variable}:-}}", "console credentials come from the shell"
    # The console calls the others' admin APIs with the token they all check.
    for name in SERVICES:
        token = services[name]["environment"]["LEADFLOW_ADMIN_TOKEN"]
        assert token == "${LEADFLOW_ADMIN_TOKEN:-}", name
    # Only insights gets the URLs: the router reads LEADFLOW_ROUTER_URL as the base of
    # the acknowledgement links it sends reps, which must stay its public address.
    assert "LEADFLOW_ROUTER_URL" not in services["router"]["environment"]
