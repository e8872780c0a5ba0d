"""Shared helpers of the chart/manifest tests: run helm offline, load YAML streams, validate.

No cluster is involved: `helm template` renders locally and kubernetes-validate checks objects
against the OpenAPI schemas of Kubernetes 1.29 and 1.33 (strict: unknown fields rejected).
CRD objects (ServiceMonitor, PrometheusRule) are not in those schemas; `check_crd` validates them
structurally instead.
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from tests.tools import ROOT, require_tool

CHART = ROOT / "charts" / "saferlhf"
MANIFESTS = ROOT / "manifests"
RULES_FILE = MANIFESTS / "prometheus" / "saferlhf-rules.yaml"
K8S_VERSIONS = ("1.29", "1.33")
CRD_GROUP = "monitoring.coreos.com/v1"


def helm(*args: str, check: bool = True, tmp: Path | None = None) -> subprocess.CompletedProcess:
    exe = require_tool("helm")
    home = Path(tmp or "/tmp/saferlhf-helm-test")
    env = {**os.environ, "HELM_CACHE_HOME": str(home / "cache"),
           "HELM_CONFIG_HOME": str(home / "config"), "HELM_DATA_HOME": str(home / "data")}
    proc = subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def render(values_file: Path | None = None, *extra: str, monitoring_api: bool = True) -> list[dict]:
    """`helm template` of the chart (release saferlhf, namespace saferlhf), as fresh dicts."""
    args = ["template", "saferlhf", str(CHART), "--namespace", "saferlhf"]
    if values_file is not None:
        args += ["-f", str(values_file)]
    if monitoring_api:
        args += ["--api-versions", CRD_GROUP]
    return load_all(_template(tuple(args) + extra))


@functools.lru_cache(maxsize=64)
def _template(args: tuple[str, ...]) -> str:
    return helm(*args).stdout


def load_all(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def validate_object(obj: dict[str, Any]) -> None:
    """Strict schema validation at every target version (CRDs structurally)."""
    if obj["apiVersion"] == CRD_GROUP:
        check_crd(obj)
        return
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)


def check_crd(obj: dict[str, Any]) -> None:
    """Structural checks of the Prometheus Operator objects (their CRD schemas aren't bundled)."""
    meta = obj["metadata"]
    assert meta.get("name") and meta.get("namespace"), obj
    spec = obj["spec"]
    if obj["kind"] == "ServiceMonitor":
        assert set(spec) <= {"selector", "namespaceSelector", "endpoints", "jobLabel"}, spec
        assert spec["selector"]["matchLabels"], spec
        for ep in spec["endpoints"]:
            assert set(ep) <= {"port", "path", "interval", "scheme", "tlsConfig"}, ep
            assert ep["port"] and ep["path"].startswith("/"), ep
    elif obj["kind"] == "PrometheusRule":
        assert set(spec) == {"groups"}, spec
        for group in spec["groups"]:
            assert set(group) <= {"name", "interval", "rules"} and group["rules"], group
            for rule in group["rules"]:
                assert set(rule) <= {"alert", "record", "expr", "for", "labels", "annotations"}
                assert ("alert" in rule) != ("record" in rule) and rule["expr"], rule
    else:
        raise AssertionError(f"unexpected CRD kind {obj['kind']}")
