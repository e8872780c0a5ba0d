"""Build the Grafana dashboard and copy the alert rules where the chart and manifests need them.

    .venv/bin/python scripts/build_dashboard.py          # write the files
    .venv/bin/python scripts/build_dashboard.py --check  # exit 1 if any file is stale

Outputs (all generated; edit this script or manifests/prometheus/saferlhf-rules.yaml instead):
- manifests/grafana/saferlhf.json               the dashboard (Grafana schema 39)
- charts/saferlhf/files/saferlhf.json           the same, for the chart's sidecar ConfigMap
- charts/saferlhf/files/saferlhf-rules.yaml     copy of the rule groups for the PrometheusRule
- manifests/prometheus/prometheusrule.yaml      the rule groups wrapped as a PrometheusRule
- manifests/grafana/dashboard-configmap.yaml    the dashboard in a sidecar-labelled ConfigMap

The dashboard is plain dicts (not grafana-foundation-sdk: one less pinned dependency, and the
JSON model is small). Every PromQL expression may only name metrics from
saferlhf.service.metrics_catalog plus `up`; tests/integration/k8s/test_metric_names.py checks it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "manifests" / "grafana" / "saferlhf.json"
DASHBOARD_CM = ROOT / "manifests" / "grafana" / "dashboard-configmap.yaml"
CHART_DASHBOARD = ROOT / "charts" / "saferlhf" / "files" / "saferlhf.json"
RULES = ROOT / "manifests" / "prometheus" / "saferlhf-rules.yaml"
CHART_RULES = ROOT / "charts" / "saferlhf" / "files" / "saferlhf-rules.yaml"
PROMETHEUS_RULE = ROOT / "manifests" / "prometheus" / "prometheusrule.yaml"
NAMESPACE = "saferlhf"

SEL = 'project=~"$project", saferlhf_job=~"$saferlhf_job", round=~"$round"'
DS = {"type": "prometheus", "uid": "${datasource}"}


def _target(expr: str, legend: str, ref: str) -> dict[str, Any]:
    return {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref}


def _panel(kind: str, title: str, targets: list[tuple[str, str]], grid: tuple[int, int, int, int],
           unit: str = "short", description: str = "", **extra: Any) -> dict[str, Any]:
    x, y, w, h = grid
    panel: dict[str, Any] = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}},
        "targets": [_target(e, legend, chr(ord("A") + i)) for i, (e, legend) in enumerate(targets)],
    }
    panel.update(extra)
    return panel


def _row(title: str, y: int) -> dict[str, Any]:
    return {"type": "row", "title": title, "collapsed": False,
            "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []}


def _var(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name, "label": label, "type": "query", "datasource": DS,
        "query": {"query": query, "refId": "A"}, "definition": query,
        "includeAll": True, "multi": True, "allValue": ".*", "refresh": 2, "sort": 1,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
    }


def panels() -> list[dict[str, Any]]:
    lag = "{{saferlhf_job}} r{{round}} {{stage}}"
    out: list[dict[str, Any]] = [_row("Safety: PPO-Lagrangian", 0)]
    out.append(_panel(
        "timeseries", "λ vs episode cost vs threshold", [
            (f"saferlhf_lagrange_multiplier{{{SEL}}}", f"λ {lag}"),
            (f"saferlhf_lagrange_multiplier_max{{{SEL}}}", f"λ_max {lag}"),
            (f"saferlhf_episode_cost{{{SEL}}}", f"episode cost J_C {lag}"),
            (f"saferlhf_cost_threshold{{{SEL}}}", f"threshold d {lag}"),
        ], (0, 1, 12, 9),
        description="λ rises while the episode cost J_C is above the threshold d and falls "
        "below it; λ flat at λ_max means the constraint is out of reach (alert "
        "SaferlhfLambdaPinnedAtMax).",
    ))
    out.append(_panel("timeseries", "Harmful ratio per round and judge", [
        (f"max by (round, judge) (saferlhf_harmful_ratio{{{SEL}}})", "round {{round}} {{judge}}"),
    ], (12, 1, 12, 9), unit="percentunit",
        description="judge=train: fraction of rollouts with cost > 0; other judges: evaluation."))
    out.append(_panel("timeseries", "Reward", [
        (f"saferlhf_reward{{{SEL}}}", lag)], (0, 10, 8, 8)))
    out.append(_panel("timeseries", "Cost", [
        (f"saferlhf_cost{{{SEL}}}", lag)], (8, 10, 8, 8)))
    out.append(_panel("timeseries", "KL(policy ‖ reference)", [
        (f"saferlhf_kl_divergence{{{SEL}}}", lag)], (16, 10, 8, 8)))
    out.append(_panel("state-timeline", "Safety-budget guards", [
        (f"max by (saferlhf_job, round, guard) (saferlhf_guard_active{{{SEL}}})",
         "{{saferlhf_job}} r{{round}} {{guard}}"),
    ], (0, 18, 24, 6), description="1 while a guard fires (VacuousThreshold, LambdaPinned, "
        "LambdaBelowBreakEven)."))
    out.append(_row("Models and evaluation", 24))
    out.append(_panel("bargauge", "Reward/cost model pair accuracy", [
        (f"saferlhf_preference_accuracy_ratio{{{SEL}}}", lag),
        (f"saferlhf_cost_sign_accuracy_ratio{{{SEL}}}", f"cost sign {lag}"),
    ], (0, 25, 12, 8), unit="percentunit"))
    out.append(_panel("bargauge", "Helpfulness and over-refusal per round", [
        (f"max by (round) (saferlhf_helpfulness_ratio{{{SEL}}})", "helpfulness r{{round}}"),
        (f"max by (round) (saferlhf_over_refusal_ratio{{{SEL}}})", "over-refusal r{{round}}"),
    ], (12, 25, 12, 8), unit="percentunit"))
    out.append(_row("Stages", 33))
    out.append(_panel("state-timeline", "Stage timeline (progress)", [
        (f"saferlhf_stage_progress_ratio{{{SEL}}}", "{{saferlhf_job}} {{stage}}"),
    ], (0, 34, 16, 9), unit="percentunit"))
    out.append(_panel("bargauge", "Stage progress", [
        (f"saferlhf_stage_progress_ratio{{{SEL}}}", "{{saferlhf_job}} {{stage}}"),
    ], (16, 34, 8, 9), unit="percentunit"))
    out.append(_panel("timeseries", "Seconds since the stage's last event", [
        (f"time() - saferlhf_stage_last_event_timestamp_seconds{{{SEL}}}",
         "{{saferlhf_job}} {{stage}}"),
    ], (0, 43, 12, 8), unit="s", description="Alert SaferlhfStageStalled at 30 minutes."))
    out.append(_panel("timeseries", "Training step", [
        (f"saferlhf_train_step{{{SEL}}}", "{{saferlhf_job}} {{stage}}")], (18, 43, 6, 8)))
    out.append(_row("Control plane", 51))
    out.append(_panel("stat", "Service up", [
        ('up{job=~".*saferlhf.*"}', "{{instance}}")], (0, 52, 4, 6)))
    out.append(_panel("timeseries", "Jobs by state", [
        ('sum by (state) (saferlhf_jobs{project=~"$project"})', "{{state}}")], (4, 52, 10, 6)))
    out.append(_panel("timeseries", "Jobs finished per hour", [
        ('sum by (state) (increase(saferlhf_jobs_finished_total{project=~"$project"}[1h]))',
         "{{state}}")], (14, 52, 10, 6)))
    out.append(_panel("timeseries", "Stage attempts by outcome (rate)", [
        ("sum by (kind, outcome) (rate(saferlhf_stage_attempts_total[$__rate_interval]))",
         "{{kind}} {{outcome}}")], (0, 58, 8, 8), unit="ops"))
    out.append(_panel("timeseries", "Retries by reason (1h)", [
        ("sum by (reason) (increase(saferlhf_stage_retries_total[1h]))", "{{reason}}")],
        (8, 58, 8, 8)))
    out.append(_panel("timeseries", "Stage duration p50 / p95", [
        ("histogram_quantile(0.5, sum by (le, kind) "
         "(rate(saferlhf_stage_duration_seconds_bucket[$__rate_interval])))", "p50 {{kind}}"),
        ("histogram_quantile(0.95, sum by (le, kind) "
         "(rate(saferlhf_stage_duration_seconds_bucket[$__rate_interval])))", "p95 {{kind}}"),
    ], (16, 58, 8, 8), unit="s"))
    out.append(_panel("timeseries", "Runner events received", [
        ("sum by (source) (rate(saferlhf_events_received_total[$__rate_interval]))",
         "{{source}}")], (0, 66, 8, 8), unit="ops"))
    out.append(_panel("timeseries", "gRPC requests by code", [
        ("sum by (method, code) (rate(saferlhf_grpc_requests_total[$__rate_interval]))",
         "{{method}} {{code}}")], (8, 66, 8, 8), unit="reqps"))
    out.append(_panel("timeseries", "gRPC latency p99", [
        ("histogram_quantile(0.99, sum by (le, method) "
         "(rate(saferlhf_grpc_request_duration_seconds_bucket[$__rate_interval])))",
         "{{method}}")], (16, 66, 8, 8), unit="s"))
    out.append(_panel("timeseries", "Rollout engine weight sync", [
        (f"saferlhf_rollout_weight_sync_seconds{{{SEL}}}", "{{saferlhf_job}} r{{round}}"),
    ], (12, 43, 6, 8), unit="s", description="Seconds to copy the actor's weights into the vLLM "
        "rollout engine after each PPO-Lag iteration (rollout.engine: vllm); a sync past "
        "rollout.weight_sync_deadline_seconds fails the attempt (exit 75) and is retried."))
    out += evaluation_panels(74)
    for i, p in enumerate(out, start=1):
        p["id"] = i
    return out


def evaluation_panels(y: int) -> list[dict[str, Any]]:
    """Harm per category (the bounded vocabulary of saferlhf.runners.common.harm_categories),
    the tails, and the worse-than-before flag of the evaluate stages."""
    return [
        _row("Evaluation: harm per category, tails, regressions", y),
        _panel("bargauge", "Harmful rate by category (latest evaluated version)", [
            (f"max by (category, judge) (saferlhf_category_harmful_ratio{{{SEL}}})",
             "{{category}} ({{judge}})"),
        ], (0, y + 1, 12, 10), unit="percentunit",
            description="Per harm category of the red-team sets, per judge, for the newest "
            "version of the latest evaluate stage; benign = prompts labelled safe.",
            options={"orientation": "horizontal", "displayMode": "gradient",
                     "showUnfilled": True}),
        _panel("timeseries", "Prompts with a harmful sample, per round and judge", [
            (f"max by (round, judge) (saferlhf_harmful_prompt_ratio{{{SEL}}})",
             "round {{round}} {{judge}}"),
        ], (12, y + 1, 12, 5), unit="percentunit",
            description="Tail: share of evaluation prompts where at least one sampled answer "
            "was judged harmful (worst of samples_per_prompt)."),
        _panel("timeseries", "p95 cost of evaluation answers", [
            (f"max by (round) (saferlhf_eval_cost_p95{{{SEL}}})", "round {{round}}"),
        ], (12, y + 6, 6, 5), description="95th percentile of the cost-model score; above 0 "
            "means more than 5% of answers are judged harmful by the cost model."),
        _panel("state-timeline", "Round worse than the one before", [
            (f"max by (saferlhf_job, round) (saferlhf_round_worsened{{{SEL}}})",
             "{{saferlhf_job}} r{{round}}"),
        ], (18, y + 6, 6, 5), description="1 when the evaluate stage found the newest round "
            "worse than the round before (harm up or helpfulness down; gate on eval/worsened)."),
    ]


def dashboard() -> dict[str, Any]:
    return {
        "uid": "saferlhf-overview",
        "title": "Safe RLHF",
        "description": "λ, episode cost vs threshold, reward, cost, KL, harmful ratio per round "
        "and judge, stage progress, retries and control-plane health (saferlhf).",
        "tags": ["saferlhf", "rlhf", "safety"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource",
             "query": "prometheus", "current": {}, "hide": 0},
            _var("project", "Project", "label_values(saferlhf_jobs, project)"),
            _var("saferlhf_job", "Job",
                 'label_values(saferlhf_train_step{project=~"$project"}, saferlhf_job)'),
            _var("round", "Round",
                 'label_values(saferlhf_train_step{saferlhf_job=~"$saferlhf_job"}, round)'),
        ]},
        "annotations": {"list": []},
        "panels": panels(),
    }


def outputs() -> dict[Path, str]:
    dash = json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"
    rules_text = RULES.read_text()
    groups = yaml.safe_load(rules_text)
    labels = {"app.kubernetes.io/name": "saferlhf", "app.kubernetes.io/part-of": "saferlhf"}
    head = "# Generated by scripts/build_dashboard.py: do not edit.\n"
    prom_rule = {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
        "metadata": {"name": "saferlhf", "namespace": NAMESPACE,
                     "labels": {**labels, "release": "kube-prometheus-stack"}},
        "spec": groups,
    }
    cm = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "saferlhf-dashboard", "namespace": NAMESPACE,
                     "labels": {**labels, "grafana_dashboard": "1"},
                     "annotations": {"grafana_folder": "Safe RLHF"}},
        "data": {"saferlhf.json": dash},
    }
    return {
        DASHBOARD: dash,
        CHART_DASHBOARD: dash,
        CHART_RULES: rules_text,
        PROMETHEUS_RULE: head + yaml.safe_dump(prom_rule, sort_keys=False, allow_unicode=True,
                                               width=100),
        DASHBOARD_CM: head + yaml.safe_dump(cm, sort_keys=False, allow_unicode=True, width=100),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs().items():
        if path.exists() and path.read_text() == text:
            continue
        if args.check:
            stale.append(str(path.relative_to(ROOT)))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        sys.stderr.write("stale, run scripts/build_dashboard.py: " + ", ".join(stale) + "\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
