"""Every PromQL expression in the dashboard, the alert rules and the chart names only metrics the
service exports (saferlhf.service.metrics_catalog), plus Prometheus's own `up`; and the dashboard's
queries are valid PromQL (parsed by promtool). Checked offline: no Grafana server ran them.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml
from saferlhf.service.metrics_catalog import exported_series_names

from tests.integration.k8s.helpers import MANIFESTS, RULES_FILE, render
from tests.tools import require_tool

PROMETHEUS_OWN = {"up"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
            "unless", "bool", "offset", "inf", "nan"}
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
LABEL_VALUES = re.compile(r"^\s*label_values\((?:(.*),)?\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$")


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (functions, keywords, labels removed)."""
    m = LABEL_VALUES.match(expr)
    if m:
        return metric_names(m.group(1) or "")
    s = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = GROUPING.sub(" ", s)
    names = set()
    for tok in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", s):
        before = s[tok.start() - 1] if tok.start() else " "
        if before.isdigit() or before == ".":
            continue  # exponent of a number, e.g. 1e3
        if s[tok.end():].lstrip().startswith("(") or tok.group(0).lower() in KEYWORDS:
            continue
        names.add(tok.group(0))
    return names


def _dashboard_exprs(dash: dict) -> list[str]:
    out = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            out.append(var["query"]["query"])
    return out


def _rule_exprs(groups: dict) -> list[str]:
    return [r["expr"] for g in groups["groups"] for r in g["rules"]]


def _sources() -> dict[str, list[str]]:
    dash = json.loads((MANIFESTS / "grafana" / "saferlhf.json").read_text())
    chart = render(None)
    chart_rules = [o["spec"] for o in chart if o["kind"] == "PrometheusRule"]
    chart_dash = [json.loads(o["data"]["saferlhf.json"]) for o in chart
                  if o["kind"] == "ConfigMap" and "saferlhf.json" in o.get("data", {})]
    assert chart_rules and chart_dash
    plain_rule = yaml.safe_load((MANIFESTS / "prometheus" / "prometheusrule.yaml").read_text())
    return {
        "dashboard": _dashboard_exprs(dash),
        "rules": _rule_exprs(yaml.safe_load(RULES_FILE.read_text())),
        "chart PrometheusRule": _rule_exprs(chart_rules[0]),
        "chart dashboard": _dashboard_exprs(chart_dash[0]),
        "manifests PrometheusRule": _rule_exprs(plain_rule["spec"]),
    }


def test_the_name_extractor_finds_metrics_and_skips_functions_labels_and_keywords():
    expr = ('histogram_quantile(0.95, sum by (le, kind) (rate(saferlhf_stage_duration_seconds_'
            'bucket{kind=~"$k"}[5m]))) > on (kind) group_left 1e3 * bogus_metric')
    assert metric_names(expr) == {"saferlhf_stage_duration_seconds_bucket", "bogus_metric"}
    assert metric_names("label_values(saferlhf_jobs, project)") == {"saferlhf_jobs"}
    assert metric_names('time() - x_total{a="b"} offset 5m') == {"x_total"}


@pytest.mark.parametrize("source", ["dashboard", "rules", "chart PrometheusRule",
                                    "chart dashboard", "manifests PrometheusRule"])
def test_every_expression_names_only_exported_metrics(source):
    exprs = _sources()[source]
    assert exprs
    allowed = exported_series_names() | PROMETHEUS_OWN
    for expr in exprs:
        names = metric_names(expr)
        assert names, f"no metric found in {expr!r}"
        unknown = names - allowed
        assert not unknown, f"{source}: {sorted(unknown)} not exported by the service: {expr}"


def test_dashboard_queries_are_valid_promql(tmp_path):
    dash = json.loads((MANIFESTS / "grafana" / "saferlhf.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    concrete = [re.sub(r'"\$[a-z_]+"', '".*"', e.replace("$__rate_interval", "5m"))
                for e in exprs]
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:expr_{i}", "expr": e} for i, e in enumerate(concrete)]}]}
    path = tmp_path / "dashboard-exprs.yaml"
    path.write_text(yaml.safe_dump(rules))
    proc = subprocess.run([require_tool("promtool"), "check", "rules", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dashboard_has_the_required_panels_and_a_sound_structure():
    dash = json.loads((MANIFESTS / "grafana" / "saferlhf.json").read_text())
    titles = {p["title"] for p in dash["panels"]}
    for needed in ("λ vs episode cost vs threshold", "Reward", "Cost", "KL(policy ‖ reference)",
                   "Harmful ratio per round and judge", "Stage timeline (progress)",
                   "Stage progress", "Retries by reason (1h)", "Service up"):
        assert needed in titles, needed
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        for t in p.get("targets", []):
            assert t["datasource"]["uid"] == "${datasource}"
    lag = next(p for p in dash["panels"] if p["title"].startswith("λ vs"))
    names = set().union(*(metric_names(t["expr"]) for t in lag["targets"]))
    assert {"saferlhf_lagrange_multiplier", "saferlhf_episode_cost",
            "saferlhf_cost_threshold"} <= names
    harm = next(p for p in dash["panels"] if p["title"].startswith("Harmful ratio"))
    assert "by (round, judge)" in harm["targets"][0]["expr"]
