"""Kubernetes manifests: kustomize renders them, and every object is schema-valid and wired."""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest
import yaml

from tests.deploy._support import DEPLOY, ROOT, SCHEMAS, module, run, tool

K8S = DEPLOY / "k8s"
BASE = K8S / "base"
KUSTOMIZATIONS = {"base": BASE, "production": K8S / "overlays" / "production"}
KUBERNETES_VERSION = "1.30.0"  # the oldest Kubernetes release the manifests must apply to
SERVICES = {"capture": 8001, "scoring": 8002, "nurture": 8003, "router": 8004, "insights": 8005}
CONSUMERS = ("scoring", "nurture", "router", "insights")
TOPICS = {
    "leads.captured",
    "leads.engagement",
    "leads.scored",
    "leads.routed",
    "leads.outcomes",
    "leads.erasure",
}

Object = dict[str, Any]


@functools.cache
def rendered(overlay: str) -> tuple[Object, ...]:
    done = run(tool("kubectl"), "kustomize", str(KUSTOMIZATIONS[overlay]))
    assert done.returncode == 0, done.stderr
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def by_kind(objects: tuple[Object, ...], kind: str) -> dict[str, Object]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def env_config(objects: tuple[Object, ...]) -> dict[str, str]:
    maps = [
        o
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("leadflow-env")
    ]
    assert len(maps) == 1
    return maps[0]["data"]  # type: ignore[no-any-return]


def containers(deployment_or_job: Object) -> list[Object]:
    spec = deployment_or_job["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


@pytest.fixture(params=sorted(KUSTOMIZATIONS))
def objects(request: pytest.FixtureRequest) -> tuple[Object, ...]:
    return rendered(request.param)


def test_kustomize_renders_everything_in_the_leadflow_namespace(
    objects: tuple[Object, ...],
) -> None:
    kinds = {o["kind"] for o in objects}
    assert {
        "Namespace",
        "ConfigMap",
        "Deployment",
        "Service",
        "Job",
        "PodDisruptionBudget",
        "ScaledObject",
    } <= kinds
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "leadflow", obj["metadata"]["name"]
    assert set(by_kind(objects, "Deployment")) == set(SERVICES)
    assert set(by_kind(objects, "Service")) == set(SERVICES)
    assert set(by_kind(objects, "PodDisruptionBudget")) == set(SERVICES)
    assert set(by_kind(objects, "ScaledObject")) == set(CONSUMERS)


def test_every_object_matches_the_kubernetes_schema(objects: tuple[Object, ...]) -> None:
    kubernetes_validate = module("kubernetes_validate")
    problems = []
    for obj in objects:
        if obj["apiVersion"].startswith("keda.sh/"):
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            problems.append(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {exc.message}")
    assert not problems, "\n".join(problems)


def test_the_kubernetes_schema_catches_a_misspelt_field() -> None:
    """Guards the guard: strict validation refuses an unknown field."""
    kubernetes_validate = module("kubernetes_validate")
    deployment = json.loads(json.dumps(by_kind(rendered("base"), "Deployment")["scoring"]))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_scaled_objects_match_the_keda_schema(objects: tuple[Object, ...]) -> None:
    jsonschema = module("jsonschema")
    schema = json.loads((SCHEMAS / "keda-scaledobject.schema.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    for name, scaled in by_kind(objects, "ScaledObject").items():
        errors = [
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(scaled)
        ]
        assert not errors, f"ScaledObject/{name}: " + "\n".join(errors)
    broken = json.loads(json.dumps(by_kind(objects, "ScaledObject")["scoring"]))
    broken["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 100
    assert not validator.is_valid(broken), "KEDA metadata values must be strings"


def test_keda_scales_each_consumer_on_its_own_group(objects: tuple[Object, ...]) -> None:
    env = env_config(objects)
    deployments = by_kind(objects, "Deployment")
    for name, scaled in by_kind(objects, "ScaledObject").items():
        spec = scaled["spec"]
        assert spec["scaleTargetRef"]["name"] == name and name in deployments
        assert spec["minReplicaCount"] >= 1
        assert spec["maxReplicaCount"] == int(env["LEADFLOW_KAFKA_PARTITIONS"]), (
            "more consumers than partitions sit idle"
        )
        for trigger in spec["triggers"]:
            assert trigger["type"] == "kafka"
            metadata = trigger["metadata"]
            assert metadata["bootstrapServers"] == env["LEADFLOW_KAFKA_BOOTSTRAP"]
            assert metadata["consumerGroup"] == f"leadflow-{name}"
            assert metadata["topic"] in TOPICS
            assert int(metadata["lagThreshold"]) > 0
        assert "replicas" not in deployments[name]["spec"], "KEDA owns the replica count"


def test_capture_scales_on_cpu_and_keeps_two_replicas(objects: tuple[Object, ...]) -> None:
    hpa = by_kind(objects, "HorizontalPodAutoscaler")["capture"]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "capture",
    }
    assert hpa["spec"]["minReplicas"] >= 2
    assert by_kind(objects, "PodDisruptionBudget")["capture"]["spec"]["minAvailable"] == 1


@pytest.mark.parametrize(("name", "port"), SERVICES.items())
def test_deployment_probes_resources_and_security(name: str, port: int) -> None:
    for overlay in KUSTOMIZATIONS:
        deployment = by_kind(rendered(overlay), "Deployment")[name]
        pod = deployment["spec"]["template"]
        annotations = pod["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(port)
        assert annotations["prometheus.io/path"] == "/metrics"

        security = pod["spec"]["securityContext"]
        assert security["runAsNonRoot"] is True and security["runAsUser"] != 0
        assert pod["spec"]["automountServiceAccountToken"] is False

        (container,) = pod["spec"]["containers"]
        assert container["command"] == ["leadflow", "serve", name]
        assert container["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][kind]), kind
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]

        service = by_kind(rendered(overlay), "Service")[name]
        assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
        assert service["spec"]["ports"][0]["port"] == port


def test_secrets_are_referenced_never_committed(objects: tuple[Object, ...]) -> None:
    assert not [o for o in objects if o["kind"] == "Secret"]
    workloads = [*by_kind(objects, "Deployment").values(), *by_kind(objects, "Job").values()]
    for workload in workloads:
        for container in containers(workload):
            env = {e["name"]: e for e in container["env"]}
            for name, key in (
                ("LEADFLOW_DATABASE_URL", "database-url"),
                ("LEADFLOW_SECRET_KEY", "secret-key"),
            ):
                assert env[name]["valueFrom"]["secretKeyRef"] == {
                    "name": "leadflow-secrets",
                    "key": key,
                }
                assert "value" not in env[name]
    for key in env_config(objects):
        assert not any(word in key for word in ("SECRET", "PASSWORD", "DATABASE_URL")), key


def test_the_console_reaches_the_other_services_and_its_users(
    objects: tuple[Object, ...],
) -> None:
    from services.insights.console.auth import ConsoleSettings

    deployments = by_kind(objects, "Deployment")
    services = by_kind(objects, "Service")
    (insights,) = deployments["insights"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in insights["env"]}
    urls = [field for field in ConsoleSettings.model_fields if field.endswith("_url")]
    assert {field.removesuffix("_url") for field in urls} == set(SERVICES) - {"insights"}
    for field in urls:
        service = field.removesuffix("_url")
        port = services[service]["spec"]["ports"][0]["port"]
        assert env[f"LEADFLOW_{field.upper()}"]["value"] == f"http://{service}:{port}"
    for name, key in (
        ("LEADFLOW_CONSOLE_PASSWORD", "console-password"),
        ("LEADFLOW_CONSOLE_USERS", "console-users"),
    ):
        assert env[name]["valueFrom"]["secretKeyRef"] == {
            "name": "leadflow-secrets",
            "key": key,
            "optional": True,
        }
    for name, deployment in deployments.items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        token = {e["name"]: e for e in container["env"]}["LEADFLOW_ADMIN_TOKEN"]
        assert token["valueFrom"]["secretKeyRef"]["key"] == "admin-token", name
        # The router reads LEADFLOW_ROUTER_URL as its public address (acknowledge links).
        if name != "insights":
            assert not any(e["name"].endswith("_URL") and "value" in e for e in container["env"])
    assert not any(key.endswith("_URL") for key in env_config(objects))


def test_env_config_points_the_services_at_kafka_and_the_config_file(
    objects: tuple[Object, ...],
) -> None:
    env = env_config(objects)
    assert env["LEADFLOW_ENV"] == "production"
    assert env["LEADFLOW_HOST"] == "0.0.0.0"
    assert env["LEADFLOW_KAFKA_ENABLE_IDEMPOTENCE"] == "true"
    assert env["LEADFLOW_CONFIG"] == "/etc/leadflow/leadflow.yaml"
    config_maps = [
        o
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("leadflow-config")
    ]
    assert len(config_maps) == 1 and "leadflow.yaml" in config_maps[0]["data"]
    for deployment in by_kind(objects, "Deployment").values():
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes["config"]["configMap"]["name"] == config_maps[0]["metadata"]["name"]


def test_migration_job_migrates_then_creates_topics(objects: tuple[Object, ...]) -> None:
    job = by_kind(objects, "Job")["leadflow-migrate"]
    spec = job["spec"]["template"]["spec"]
    assert [c["command"] for c in spec["initContainers"]] == [["leadflow", "migrate"]]
    assert [c["command"] for c in spec["containers"]] == [["leadflow", "topics", "create"]]
    assert spec["restartPolicy"] in ("Never", "OnFailure")
    assert spec["securityContext"]["runAsNonRoot"] is True


def test_base_config_map_is_the_repository_example() -> None:
    example = ROOT / "leadflow.example.yaml"
    copy = BASE / "leadflow.example.yaml"
    assert copy.read_bytes() == example.read_bytes(), (
        "deploy/k8s/base/leadflow.example.yaml differs from leadflow.example.yaml: "
        "run deploy/scripts/sync-k8s-config.sh"
    )
    config_map = next(
        o
        for o in rendered("base")
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("leadflow-config")
    )
    assert config_map["data"]["leadflow.yaml"] == example.read_text(encoding="utf-8")
