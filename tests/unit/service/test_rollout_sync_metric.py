"""The rollout engine's weight-sync time reaches Prometheus as
saferlhf_rollout_weight_sync_seconds (the key PPO-Lag's engine_sync module emits)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from saferlhf.runners.ppo_lag.engine_sync import SYNC_METRIC
from saferlhf.service.metrics import Metrics, route

LABELS = {"saferlhf_job": "j-1", "project": "p", "round": "1", "stage": "ppo_lag"}


def test_the_runners_sync_key_routes_to_the_weight_sync_gauge() -> None:
    assert SYNC_METRIC == "rollout/weight_sync_seconds"
    assert route(SYNC_METRIC) == ("saferlhf_rollout_weight_sync_seconds", {})


def test_a_sync_event_sets_the_gauge_to_the_last_sync() -> None:
    registry = CollectorRegistry()
    m = Metrics(registry)
    for step, seconds in ((4, 0.25), (8, 0.5)):
        m.observe_event(job_id="j-1", project="p", round=1, kind="ppo_lag", now=float(step),
                        event={"type": "metrics", "step": step, "values": {SYNC_METRIC: seconds}})
    assert registry.get_sample_value("saferlhf_rollout_weight_sync_seconds", LABELS) == 0.5
