"""The plain-YAML install in manifests/: rendered from the chart, in sync, and valid.

manifests/install.yaml (SQLite), install-postgresql.yaml and prometheus/servicemonitor.yaml are
`helm template` output of charts/saferlhf with the chart's Helm bookkeeping labels removed;
regenerate them with
`SAFERLHF_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/integration/k8s/test_manifests.py`.
Every object under manifests/ is validated offline (kubernetes-validate strict at 1.29 and 1.33,
CRDs structurally); none was applied to a real cluster here.
"""

from __future__ import annotations

import os

import pytest

from tests.integration.k8s.helpers import (
    CHART,
    CRD_GROUP,
    MANIFESTS,
    helm,
    load_all,
    validate_object,
)

HEADER = (
    "# Generated from charts/saferlhf by tests/integration/k8s/test_manifests.py "
    "(SAFERLHF_UPDATE_GOLDEN=1): do not edit.\n# {what}\n"
)
VARIANTS = {
    "install.yaml": ("Service with SQLite state on a PVC. Create Secret saferlhf-tokens first "
                     "(docs/deploy_kubernetes.md).", []),
    "install-postgresql.yaml": ("Service with PostgreSQL state: the URL comes from Secret "
                                "saferlhf-postgresql, key database-url.",
                                ["--set", "postgresql.enabled=true",
                                 "--set", "postgresql.existingSecret=saferlhf-postgresql"]),
    "prometheus/servicemonitor.yaml": ("ServiceMonitor (needs the Prometheus Operator).",
                                       ["--show-only", "templates/servicemonitor.yaml",
                                        "--api-versions", CRD_GROUP]),
}


def _plain(text: str) -> str:
    """Drop Helm's bookkeeping so the objects read as a kubectl install."""
    out = []
    for line in text.splitlines():
        if "helm.sh/chart:" in line:
            continue
        out.append(line.replace("app.kubernetes.io/managed-by: Helm",
                                "app.kubernetes.io/managed-by: kubectl"))
    return "\n".join(out) + "\n"


def _render(extra: list[str], tmp) -> str:
    args = ["template", "saferlhf", str(CHART), "--namespace", "saferlhf", "--skip-tests",
            "--set", "monitoring.grafanaDashboard.enabled=false", *extra]
    return _plain(helm(*args, tmp=tmp).stdout)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_plain_manifests_are_the_rendered_chart(name, tmp_path):
    what, extra = VARIANTS[name]
    text = HEADER.format(what=what) + _render(extra, tmp_path)
    path = MANIFESTS / name
    if os.environ.get("SAFERLHF_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.read_text() == text, f"{name} is stale: see this module's docstring"


def _all_objects() -> list[tuple[str, dict]]:
    out = []
    for path in sorted(MANIFESTS.rglob("*.yaml")):
        if path.parent.name == "prometheus" and path.name == "saferlhf-rules.yaml":
            continue  # a Prometheus rule file, not a Kubernetes object (promtool tests it)
        for obj in load_all(path.read_text()):
            out.append((str(path.relative_to(MANIFESTS)), obj))
    return out


def test_manifests_cover_the_whole_install():
    kinds = {obj["kind"] for _, obj in _all_objects()}
    assert {"Namespace", "ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Deployment",
            "Service", "PersistentVolumeClaim", "NetworkPolicy", "ServiceMonitor",
            "PrometheusRule"} <= kinds
    assert "ClusterRole" not in kinds and "ClusterRoleBinding" not in kinds
    assert (MANIFESTS / "grafana" / "saferlhf.json").exists()


def test_every_manifest_object_is_valid_at_1_29_and_1_33():
    objs = _all_objects()
    assert len(objs) >= 15
    for where, obj in objs:
        try:
            validate_object(obj)
        except Exception as exc:  # name the file and object in the failure
            raise AssertionError(f"{where}: {obj['kind']} {obj['metadata'].get('name')}: "
                                 f"{exc}") from exc


def test_postgresql_variant_reads_the_url_from_the_secret_reference():
    objs = load_all((MANIFESTS / "install-postgresql.yaml").read_text())
    dep = next(o for o in objs if o["kind"] == "Deployment")
    env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
    ref = next(e for e in env if e["name"] == "SAFERLHF_DATABASE_URL")["valueFrom"]
    assert ref["secretKeyRef"]["name"] == "saferlhf-postgresql"
