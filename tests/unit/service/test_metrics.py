"""Metrics: every catalogued metric on an injected registry, runner keys routed to the right
gauges with the right labels, jobs counted at scrape time, per-job series dropped after
retention."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from saferlhf.service.metrics import Metrics, route
from saferlhf.service.metrics_catalog import CATALOG, exported_series_names
from saferlhf.service.state.types import JobState

from tests.unit.service.scheduler.helpers import add_job, make_app

LABELS = {"saferlhf_job": "j-1", "project": "p", "round": "2", "stage": "ppo_lag"}


def test_every_catalogued_metric_is_registered_and_nothing_else() -> None:
    registry = CollectorRegistry()
    Metrics(registry, count_jobs=lambda: {("p", "RUNNING"): 1})
    names = {m.name for m in registry.collect()}
    expected = {m.name[:-len("_total")] if m.type == "counter" else m.name for m in CATALOG}
    assert names == expected
    text = generate_latest(registry).decode()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert line.split("{")[0].split(" ")[0] in exported_series_names(), line


def test_runner_keys_are_routed_per_the_catalog() -> None:
    assert route("train/lambda") == ("saferlhf_lagrange_multiplier", {})
    assert route("train/episode_cost") == ("saferlhf_episode_cost", {})
    assert route("eval/accuracy_sign") == ("saferlhf_cost_sign_accuracy_ratio", {})
    assert route("train/harmful_rate") == ("saferlhf_harmful_ratio", {"judge": "train"})
    assert route("eval/harmful_rate/keyword") == ("saferlhf_harmful_ratio", {"judge": "keyword"})
    assert route("guard/LambdaPinned") == ("saferlhf_guard_active", {"guard": "LambdaPinned"})
    assert route("train/loss") is None and route("eval/harmful_rate/") is None


def test_category_harm_rates_get_a_category_label_bounded_by_the_vocabulary() -> None:
    assert route("eval/category_harmful_rate/gpt/cybercrime") == (
        "saferlhf_category_harmful_ratio", {"judge": "gpt", "category": "cybercrime"})
    assert route("eval/category_harmful_rate/gpt/made-up-category") == (
        "saferlhf_category_harmful_ratio", {"judge": "gpt", "category": "other"})
    assert route("eval/category_harmful_rate/gpt") is None
    assert route("eval/prompt_harmful_share/cost_model") == (
        "saferlhf_harmful_prompt_ratio", {"judge": "cost_model"})
    assert route("eval/cost_p95") == ("saferlhf_eval_cost_p95", {})
    assert route("eval/worsened") == ("saferlhf_round_worsened", {})
    registry = CollectorRegistry()
    m = Metrics(registry)
    values = {f"eval/category_harmful_rate/kw/{c}-{i}": 0.5 for i in range(50) for c in "ab"}
    m.observe_event(job_id="j-1", project="p", round=2, kind="evaluate", now=1.0,
                    event={"type": "metrics", "step": 0, "values": values})
    text = generate_latest(registry).decode()
    series = [ln for ln in text.splitlines() if ln.startswith("saferlhf_category_harmful_ratio{")]
    assert len(series) == 1 and 'category="other"' in series[0]  # 100 keys, one bounded series


def test_metric_events_set_the_training_gauges() -> None:
    registry = CollectorRegistry()
    m = Metrics(registry)
    m.observe_event(job_id="j-1", project="p", round=2, kind="ppo_lag", now=123.0, event={
        "type": "metrics", "step": 40, "values": {
            "train/lambda": 1.31, "train/episode_cost": 0.22, "train/harmful_rate": 0.1,
            "eval/harmful_rate/cost_model": 0.05, "train/loss": 9.0, "flag": True}})
    m.observe_event(job_id="j-1", project="p", round=2, kind="ppo_lag", now=124.0,
                    event={"type": "progress", "step": 10, "total_steps": 40})
    get = registry.get_sample_value
    assert get("saferlhf_lagrange_multiplier", LABELS) == 1.31
    assert get("saferlhf_episode_cost", LABELS) == 0.22
    assert get("saferlhf_harmful_ratio", {**LABELS, "judge": "train"}) == 0.1
    assert get("saferlhf_harmful_ratio", {**LABELS, "judge": "cost_model"}) == 0.05
    assert get("saferlhf_train_step", LABELS) == 40
    assert get("saferlhf_stage_progress_ratio", LABELS) == 0.25
    assert get("saferlhf_stage_last_event_timestamp_seconds", LABELS) == 124.0


def test_a_guard_warning_sets_guard_active() -> None:
    registry = CollectorRegistry()
    m = Metrics(registry)
    m.observe_event(job_id="j-1", project="p", round=2, kind="ppo_lag", now=1.0, event={
        "type": "log", "level": "warning", "message": "VacuousThreshold: d is above every cost"})
    assert registry.get_sample_value(
        "saferlhf_guard_active", {**LABELS, "guard": "VacuousThreshold"}) == 1.0


def test_per_job_series_are_dropped_only_after_the_retention() -> None:
    registry = CollectorRegistry()
    m = Metrics(registry, retention_seconds=600)
    for job in ("j-1", "j-2"):
        m.observe_event(job_id=job, project="p", round=2, kind="ppo_lag", now=1.0,
                        event={"type": "metrics", "step": 1, "values": {"train/lambda": 2.0}})
    m.job_finished("j-1", "p", "SUCCEEDED", now=1000.0)
    assert m.sweep(now=1599.0) == 0
    assert registry.get_sample_value("saferlhf_lagrange_multiplier", LABELS) == 2.0
    assert m.sweep(now=1600.0) > 0
    assert registry.get_sample_value("saferlhf_lagrange_multiplier", LABELS) is None
    assert registry.get_sample_value(
        "saferlhf_lagrange_multiplier", {**LABELS, "saferlhf_job": "j-2"}) == 2.0
    assert m.tracked_jobs() == {"j-2"}
    assert registry.get_sample_value(
        "saferlhf_jobs_finished_total", {"project": "p", "state": "SUCCEEDED"}) == 1.0


def test_the_app_exports_jobs_by_state_and_stream_metrics_end_to_end(tmp_path: Path) -> None:
    app, ex, clock = make_app(tmp_path, metrics_retention_seconds=60)
    add_job(app, tmp_path, pipeline=(("r1/ppo_lag", "ppo_lag", ()),))
    add_job(app, tmp_path, job_id="j-2", pipeline=(("r1/sft", "sft", ()),))
    get = app.registry.get_sample_value
    assert get("saferlhf_jobs", {"project": "p", "state": "PENDING"}) == 2.0
    app.scheduler.tick()
    assert get("saferlhf_jobs", {"project": "p", "state": "RUNNING"}) == 2.0
    run = ex.run_of("r1/ppo_lag")
    streamed = ex.emit("r1/ppo_lag", "metrics", step=3, values={"train/lambda": 0.7})
    app.report_events(run.spec.attempt_id, run.spec.env["SAFERLHF_STAGE_TOKEN"], [streamed])
    labels = {"saferlhf_job": "j-1", "project": "p", "round": "1", "stage": "ppo_lag"}
    assert get("saferlhf_lagrange_multiplier", labels) == 0.7
    assert get("saferlhf_events_received_total", {"source": "stream"}) == 1.0
    ex.emit("r1/ppo_lag", "metrics", step=4, values={"train/lambda": 0.8})  # file only
    ex.finish("r1/ppo_lag", 0)
    app.scheduler.tick()
    assert get("saferlhf_lagrange_multiplier", labels) == 0.8
    assert get("saferlhf_events_received_total", {"source": "file"}) == 1.0
    assert app.store.get_job("j-1").state == JobState.SUCCEEDED
    clock.advance(61)
    app.scheduler.tick()  # the sweep runs every tick
    assert get("saferlhf_lagrange_multiplier", labels) is None
    assert get("saferlhf_stage_duration_seconds_count", {"kind": "ppo_lag"}) == 1.0
