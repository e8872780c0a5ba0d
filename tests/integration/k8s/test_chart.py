"""The Helm chart: lint, render every ci/*-values.yaml scenario, validate every object.

Offline only: `helm lint` and `helm template` (helm v4 from the PyPI wheel, see environment.md),
kubernetes-validate strict at 1.29 and 1.33; ServiceMonitor/PrometheusRule checked structurally.
Not tested here: installing on a real cluster, the `helm test` pod actually running, probes
passing against a live pod — that is the opt-in `-m k8s` suite (tests/k8s/).
"""

from __future__ import annotations

import json
import re

import pytest
import yaml

from tests.integration.k8s.helpers import (
    CHART,
    CRD_GROUP,
    MANIFESTS,
    RULES_FILE,
    helm,
    render,
    validate_object,
)

SCENARIOS = sorted((CHART / "ci").glob("*-values.yaml"))


def _by_kind(objs: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for o in objs:
        out.setdefault(o["kind"], []).append(o)
    return out


def test_the_four_ci_scenarios_exist():
    names = {p.name for p in SCENARIOS}
    assert {"default-values.yaml", "postgresql-values.yaml", "tls-tokens-values.yaml",
            "monitoring-off-values.yaml"} <= names


@pytest.mark.parametrize("values", [None, *SCENARIOS], ids=lambda p: p.name if p else "defaults")
def test_helm_lint_passes_strictly(values, tmp_path):
    args = ["lint", "--strict", str(CHART)] + (["-f", str(values)] if values else [])
    helm(*args, tmp=tmp_path)


@pytest.mark.parametrize("monitoring_api", [True, False], ids=["monitoring-api", "no-crds"])
@pytest.mark.parametrize("values", SCENARIOS, ids=lambda p: p.name)
def test_every_rendered_object_is_valid_at_1_29_and_1_33(values, monitoring_api):
    objs = render(values, monitoring_api=monitoring_api)
    assert objs
    for obj in objs:
        validate_object(obj)


def test_monitoring_objects_need_the_prometheus_operator_api():
    with_api = _by_kind(render(None, monitoring_api=True))
    without = _by_kind(render(None, monitoring_api=False))
    assert "ServiceMonitor" in with_api and "PrometheusRule" in with_api
    assert "ServiceMonitor" not in without and "PrometheusRule" not in without
    off = _by_kind(render(CHART / "ci" / "monitoring-off-values.yaml", monitoring_api=True))
    assert not {"ServiceMonitor", "PrometheusRule"} & set(off)
    assert not any(cm["metadata"]["name"].endswith("-dashboard") for cm in off["ConfigMap"])


def test_service_monitor_carries_the_configurable_release_label_and_selects_the_service():
    objs = _by_kind(render(None, "--set", "monitoring.serviceMonitor.release=kps"))
    sm = objs["ServiceMonitor"][0]
    assert sm["metadata"]["labels"]["release"] == "kps"
    svc = objs["Service"][0]
    labels = svc["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items())
    ports = {p["name"] for p in svc["spec"]["ports"]}
    assert {ep["port"] for ep in sm["spec"]["endpoints"]} <= ports
    none = _by_kind(render(None, "--set", "monitoring.serviceMonitor.release="))
    assert "release" not in none["ServiceMonitor"][0]["metadata"]["labels"]


def test_prometheus_rule_holds_exactly_the_shipped_rule_groups():
    rule = _by_kind(render(None))["PrometheusRule"][0]
    assert rule["apiVersion"] == CRD_GROUP
    assert rule["spec"] == yaml.safe_load(RULES_FILE.read_text())


def test_dashboard_configmap_is_labelled_for_the_grafana_sidecar():
    cms = [c for c in _by_kind(render(None))["ConfigMap"] if "saferlhf.json" in c["data"]]
    assert len(cms) == 1
    assert cms[0]["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((MANIFESTS / "grafana" / "saferlhf.json").read_text())
    assert json.loads(cms[0]["data"]["saferlhf.json"]) == shipped


def test_rbac_is_a_namespaced_role_in_the_stage_namespace_never_a_cluster_role():
    for values in SCENARIOS:
        kinds = _by_kind(render(values))
        assert "ClusterRole" not in kinds and "ClusterRoleBinding" not in kinds
    objs = _by_kind(render(CHART / "ci" / "postgresql-values.yaml"))
    role = objs["Role"][0]
    assert role["metadata"]["namespace"] == "training"  # executor.namespace
    granted = {(g, r) for rule in role["rules"] for g in rule["apiGroups"]
               for r in rule["resources"]}
    assert granted == {("batch", "jobs"), ("", "pods"), ("", "pods/log"), ("", "services"),
                       ("", "secrets"), ("", "events")}
    binding = objs["RoleBinding"][0]
    assert binding["subjects"][0]["namespace"] == "saferlhf"
    off = _by_kind(render(CHART / "ci" / "tls-tokens-values.yaml"))
    assert "Role" not in off and "ServiceAccount" not in off
    dep = off["Deployment"][0]["spec"]["template"]["spec"]
    assert dep["serviceAccountName"] == "saferlhf-prebuilt"


def test_deployment_uses_native_grpc_probes_and_a_locked_down_security_context():
    dep = _by_kind(render(None))["Deployment"][0]["spec"]["template"]["spec"]
    c = dep["containers"][0]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["grpc"]["port"] == 50051
    assert dep["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["command"] == ["saferlhf", "serve"]
    assert {p["containerPort"] for p in c["ports"]} == {50051, 9464}


def test_tls_switches_probes_to_tcp_and_mounts_the_certificate():
    objs = _by_kind(render(CHART / "ci" / "tls-tokens-values.yaml"))
    c = objs["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]
    assert "tcpSocket" in c["readinessProbe"] and "grpc" not in c["readinessProbe"]
    settings = next(cm for cm in objs["ConfigMap"] if cm["metadata"]["name"].endswith("-settings"))
    assert settings["data"]["SAFERLHF_TLS_CERT"] == "/etc/saferlhf/tls/tls.crt"
    assert settings["data"]["SAFERLHF_TOKENS_FILE"] == "/etc/saferlhf/tokens/tokens.yaml"
    pod = json.loads(settings["data"]["SAFERLHF_KUBERNETES_POD_OPTIONS"])
    assert pod["eventsCaSecret"] == "saferlhf-tls"  # runners verify the service's certificate


def test_postgresql_url_comes_from_the_existing_secret_and_no_state_pvc_is_made():
    objs = _by_kind(render(CHART / "ci" / "postgresql-values.yaml"))
    c = objs["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    ref = env["SAFERLHF_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "saferlhf-postgresql", "key": "database-url"}
    assert "PersistentVolumeClaim" not in objs  # existing artifacts claim, no SQLite PVC
    settings = next(cm for cm in objs["ConfigMap"] if cm["metadata"]["name"].endswith("-settings"))
    pod = json.loads(settings["data"]["SAFERLHF_KUBERNETES_POD_OPTIONS"])
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["eventsAddress"] == "saferlhf.saferlhf.svc:50051"  # pods reach the Service
    assert settings["data"]["SAFERLHF_KUBERNETES_QUEUE"] == "gpu-queue"


def test_helm_test_hook_runs_a_grpc_health_check():
    pods = [p for p in render(None) if p["kind"] == "Pod"]
    assert len(pods) == 1
    pod = pods[0]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    cmd = pod["spec"]["containers"][0]["command"]
    assert "HealthStub" in cmd[2] and cmd[3] == "saferlhf.saferlhf.svc:50051"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--set", "postgresql.enabled=true"], "postgresql.existingSecret"),
        (["--set", "tls.enabled=true"], "tls.secretName"),
        (["--set", "auth.tokensSecret="], "allowInsecureBind"),
        (["--set", "unknownKey=1"], "unknownKey"),
        (["--set", "settings.maxConcurrentStages=0"], "maxConcurrentStages"),
        (["--set", "artifacts.size=lots"], "size"),
    ],
)
def test_bad_values_fail_with_a_message_naming_the_value(flags, message, tmp_path):
    proc = helm("template", "saferlhf", str(CHART), *flags, check=False, tmp=tmp_path)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr


def _leaf_paths(node: object, schema: dict, prefix: str = "") -> list[str]:
    """Dotted paths of the values; free-form maps (no schema properties) count as one value."""
    if isinstance(node, dict) and "properties" in schema:
        return [p for k, v in node.items()
                for p in _leaf_paths(v, schema["properties"].get(k, {}), f"{prefix}{k}.")]
    return [prefix[:-1]]


def test_every_value_is_documented_in_values_yaml_and_typed_in_the_schema():
    text = (CHART / "values.yaml").read_text()
    values = yaml.safe_load(text)
    schema = json.loads((CHART / "values.schema.json").read_text())
    lines = text.splitlines()
    for path in _leaf_paths(values, schema):
        key = path.split(".")[-1]
        indent = "  " * (len(path.split(".")) - 1)
        idx = next((i for i, ln in enumerate(lines) if re.match(rf"^{indent}{key}:", ln)), None)
        assert idx is not None, path
        j = idx - 1
        while j >= 0 and lines[j].strip().startswith("#") and "# --" not in lines[j]:
            j -= 1
        assert j >= 0 and lines[j].strip().startswith("# --"), f"{path} has no '# --' comment"
        node = schema
        for part in path.split("."):
            assert node.get("additionalProperties") is False, f"{path}: schema not closed"
            node = node["properties"][part]
        assert node.get("description") or node.get("type") == "object", path


def test_the_service_can_write_but_never_read_secrets():
    role = _by_kind(render(None))["Role"][0]
    for rule in role["rules"]:
        if "secrets" in rule["resources"]:
            assert not {"get", "list", "watch"} & set(rule["verbs"])


@pytest.mark.parametrize("values", SCENARIOS, ids=lambda p: p.name)
def test_the_settings_configmap_is_accepted_by_the_service_settings_and_executor(values):
    from saferlhf.service.execution.k8s_job import K8sJobOptions
    from saferlhf.service.settings import ENV_PREFIX, Settings, load_settings

    objs = _by_kind(render(values))
    data = next(cm for cm in objs["ConfigMap"]
                if cm["metadata"]["name"].endswith("-settings"))["data"]
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    assert set(data) <= known, f"ignored by the service: {sorted(set(data) - known)}"
    settings = load_settings(env=data)
    assert settings.executor == "kubernetes"
    opts = K8sJobOptions.from_mapping(
        settings.kubernetes_pod_options, namespace=settings.kubernetes_namespace,
        image=settings.kubernetes_image, artifacts_pvc=settings.kubernetes_artifacts_pvc,
        queue_name=settings.kubernetes_queue)
    assert opts.events_address.endswith(".saferlhf.svc:50051")
    assert opts.artifacts_pvc and opts.image
