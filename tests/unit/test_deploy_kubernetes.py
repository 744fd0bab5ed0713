"""deploy/kubernetes/, checked without a cluster: each manifest against Kubernetes' own schemas
(kubernetes-validate, strict: an unknown field is an error) at a pinned version; the
ServiceMonitor and PrometheusRule (custom resources, in no core schema) against the
prometheus-operator CRDs' schemas vendored in tests/data/schemas/; and what the manifests
say to each other and to the gateway: the config loads, the probes and ports are Warden's,
the pods outlive their drain, the replicas share Redis."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import jsonschema
import kubernetes_validate
import orjson
import pytest
import yaml

from tests.deploy_support import DEPLOY, ROOT, SCHEMAS, drain_seconds, load_yaml
from tools import k8s_rules
from warden.settings import parse_settings

KUBERNETES = "1.33.0"  # the oldest Kubernetes these manifests are checked against
FOLDER = DEPLOY / "kubernetes"
MANIFESTS = sorted(p for p in FOLDER.glob("*.yaml") if p.name != "kustomization.yaml")
CUSTOM = {"ServiceMonitor": "servicemonitor-crd.json", "PrometheusRule": "prometheusrule-crd.json"}


def resources() -> dict[str, dict]:
    found = {}
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            assert doc["kind"] not in found, f"two {doc['kind']}s"
            found[doc["kind"]] = doc
    return found


RESOURCES = resources()


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_each_manifest_is_valid(path):
    for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        if doc["kind"] in CUSTOM:
            custom_validator(doc["kind"]).validate(doc)
        else:
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_the_validation_sees_a_mistake():
    broken = copy.deepcopy(RESOURCES["Deployment"])
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["httpGet"]["paht"] = "/ready"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES, strict=True)
    for kind in CUSTOM:
        broken = copy.deepcopy(RESOURCES[kind])
        broken["spec"]["selectr"] = {}
        with pytest.raises(jsonschema.ValidationError):
            custom_validator(kind).validate(broken)
    broken = copy.deepcopy(RESOURCES["PrometheusRule"])
    broken["spec"]["groups"][0]["rules"][0]["for"] = "a minute"
    with pytest.raises(jsonschema.ValidationError):
        custom_validator("PrometheusRule").validate(broken)


def custom_validator(kind: str) -> jsonschema.Draft7Validator:
    """The CRD's schema, with what the API server adds: unknown fields are refused (it prunes
    them; `kubectl apply` warns), and the metadata is an object's."""
    schema = orjson.loads((SCHEMAS / CUSTOM[kind]).read_bytes())
    closed = close_objects(schema)
    closed["properties"]["metadata"] = {
        "type": "object", "required": ["name"],
        "properties": {"name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
                       "labels": {"type": "object", "additionalProperties": {"type": "string"}}}}
    closed["required"] = ["apiVersion", "kind", "metadata", "spec"]
    closed["properties"]["kind"] = {"const": kind}
    closed["properties"]["apiVersion"] = {"const": "monitoring.coreos.com/v1"}
    return jsonschema.Draft7Validator(closed)


def close_objects(schema: object) -> object:
    if isinstance(schema, list):
        return [close_objects(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: close_objects(value) for key, value in schema.items()}
    if ("properties" in closed and "additionalProperties" not in closed
            and not closed.get("x-kubernetes-preserve-unknown-fields")):
        closed["additionalProperties"] = False
    return closed


def test_kustomize_applies_every_manifest():
    kustomization = load_yaml(FOLDER / "kustomization.yaml")
    assert sorted(kustomization["resources"]) == [p.name for p in MANIFESTS]


def test_the_prometheus_rule_is_the_alert_rules_file():
    """deploy/kubernetes/prometheusrule.yaml is generated from deploy/prometheus/alerts.yml
    (`python -m tools.k8s_rules`), and says the same."""
    assert k8s_rules.main(["--check"]) == 0
    alerts = load_yaml(DEPLOY / "prometheus" / "alerts.yml")
    assert RESOURCES["PrometheusRule"]["spec"]["groups"] == alerts["groups"]
    assert k8s_rules.prometheus_rule("groups:\n- name: x\n  rules: []\n") != \
        k8s_rules.RULE.read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="no `groups`"):
        k8s_rules.prometheus_rule("alert: x\n")


def pod() -> dict:
    return RESOURCES["Deployment"]["spec"]["template"]["spec"]


def container() -> dict:
    [found] = pod()["containers"]
    return found


def secret_environment() -> dict[str, str]:
    """The container's environment, a stand-in value for each taken from a Secret."""
    env = {}
    for var in container()["env"]:
        ref = var["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "warden"
        env[var["name"]] = f"redis://redis.example:6379/0#{ref['key']}"
    return env


def settings():
    text = RESOURCES["ConfigMap"]["data"]["warden.yaml"]
    assert set(re.findall(r"\$\{(\w+)", text)) <= set(secret_environment())
    return parse_settings(yaml.safe_load(text), secret_environment())


def test_the_configmap_is_the_config_the_gateway_reads():
    mounts = {m["name"]: m for m in container()["volumeMounts"]}
    volumes = {v["name"]: v for v in pod()["volumes"]}
    config = mounts["config"]
    assert volumes["config"]["configMap"]["name"] == RESOURCES["ConfigMap"]["metadata"]["name"]
    # A folder, not a subPath: ConfigMap updates reach it, and the watcher reloads them.
    assert "subPath" not in config and config["readOnly"]
    args = container()["args"]
    assert args[args.index("-c") + 1] == f"{config['mountPath']}/warden.yaml"
    assert settings().reload.watch


def test_the_replicas_share_redis():
    loaded = settings()
    assert RESOURCES["Deployment"]["spec"]["replicas"] >= 2
    assert RESOURCES["HorizontalPodAutoscaler"]["spec"]["minReplicas"] >= 2
    assert loaded.guard.quarantine.store == loaded.rate_limits.store == "redis"
    assert loaded.guard.quarantine.redis_url == loaded.rate_limits.redis_url
    assert loaded.rate_limits.redis_url.startswith("redis://redis.example")  # the Secret's


def test_probes_and_ports_are_the_gateways():
    port = settings().listen[1]
    [named] = container()["ports"]
    assert (named["name"], named["containerPort"]) == ("http", port)
    assert container()["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert container()["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    service = RESOURCES["Service"]["spec"]
    assert service["ports"][0]["targetPort"] == "http"
    monitor = RESOURCES["ServiceMonitor"]["spec"]
    assert monitor["endpoints"][0]["port"] == service["ports"][0]["name"]
    assert monitor["endpoints"][0]["path"] == "/metrics"


def test_every_selector_finds_the_pods():
    pods = RESOURCES["Deployment"]["spec"]["template"]["metadata"]["labels"]
    service_labels = RESOURCES["Service"]["metadata"]["labels"]
    selectors = [RESOURCES["Deployment"]["spec"]["selector"]["matchLabels"],
                 RESOURCES["Service"]["spec"]["selector"],
                 RESOURCES["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]]
    assert all(selector.items() <= pods.items() for selector in selectors)
    assert RESOURCES["ServiceMonitor"]["spec"]["selector"]["matchLabels"].items() <= \
        service_labels.items()
    target = RESOURCES["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == \
        ("Deployment", RESOURCES["Deployment"]["metadata"]["name"])
    assert RESOURCES["PodDisruptionBudget"]["spec"]["minAvailable"] >= 1


def test_a_pod_outlives_its_drain():
    pre_stop = container()["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod()["terminationGracePeriodSeconds"] > pre_stop + drain_seconds(settings())


def test_the_pod_runs_as_the_images_user_on_a_read_only_root():
    user = re.search(r"^USER (\d+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert user and pod()["securityContext"]["runAsUser"] == int(user.group(1))
    assert pod()["securityContext"]["runAsNonRoot"]
    assert pod()["automountServiceAccountToken"] is False
    security = container()["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert security["capabilities"]["drop"] == ["ALL"]
    # What the gateway writes (the recorder's directory, its lock and the quarantine's file)
    # is on a writable volume.
    records = Path(settings().recorder.dir)
    writable = [Path(m["mountPath"]) for m in container()["volumeMounts"]
                if not m.get("readOnly")]
    assert any(records == path or path in records.parents for path in writable)
