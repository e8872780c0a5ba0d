"""Cheap-first escalation end to end: a real spec through the App, the planner, the scheduler and
the REAL local executor running every runner's CLI (tiny models, a few steps each).

Both branches: a bound the SafeDPO policy always meets (harmful rate ≤ 1) keeps it and never
starts reward, cost or PPO-Lag; a bound it can never meet (harmful rate < 0) escalates, and
PPO-Lag then starts from the SafeDPO policy. About 1.5 minutes on 2 busy cores.
"""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry
from saferlhf.service.app import App, build_app
from saferlhf.service.execution.local import LocalExecutor
from saferlhf.service.settings import Settings
from saferlhf.service.state.types import AttemptState, GateState, JobState

pytestmark = pytest.mark.slow

TINY_SPEC = Path(__file__).parent / "tiny_job.yaml"
BRANCH = ("r1/reward", "r1/cost", "r1/ppo_lag", "r1/evaluate")


def escalation_spec(name: str, bound: dict, sft: dict | None = None) -> str:
    doc = yaml.safe_load(TINY_SPEC.read_text())
    doc["metadata"]["name"] = name
    stages = doc["spec"]["stages"]
    if sft is not None:
        stages["sft"] = sft
    stages["safe_dpo"] = {
        "data": [{"format": "synthetic", "split": "safety_labelled_preference", "size": 32}],
        "epochs": 1, "batch_size": 8, "max_length_tokens": 64, "beta": 0.1,
        "safety_margin": 2.0, "optim": {"lr": 1e-3}, "log_every_steps": 1}
    stages["eval"] = {"prompts": [{"format": "synthetic", "split": "eval", "size": 16}],
                      "judges": ["synthetic", "keyword"], "samples_per_prompt": 1,
                      "max_new_tokens": 8, "arena": False, "plots": False}
    stages["ppo_lag"]["iterations"] = 1
    doc["spec"]["escalation"] = {"metric": "eval/harmful_rate", **bound}
    return yaml.safe_dump(copy.deepcopy(doc), sort_keys=False)


def make_app(tmp_path: Path) -> App:
    settings = Settings(state_dir=str(tmp_path / "state"), artifacts_root=str(tmp_path / "art"),
                        max_concurrent_stages=2)
    env = {k: v for k, v in os.environ.items() if k != "SAFERLHF_EVENTS_ADDR"}
    executor = LocalExecutor(settings.state_dir, base_env={**env, "HF_HUB_OFFLINE": "1"})
    return build_app(settings, registry=CollectorRegistry(), executor=executor)


def run_to_end(app: App, job_id: str, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while not app.store.get_job(job_id).state.terminal:
        if time.monotonic() > deadline:
            stages = {s.id: s.state.value for s in app.store.list_stages(job_id)}
            raise AssertionError(f"timed out: {stages}")
        app.scheduler.tick()
        time.sleep(0.2)


def test_escalation_runs_ppo_lag_only_when_the_safe_dpo_policy_misses_its_gate(tmp_path):
    app = make_app(tmp_path)

    kept = app.create_job(escalation_spec("kept", {"op": "<=", "value": 1.0}), project=None,
                          request_id="", validate_only=False)
    assert kept is not None
    run_to_end(app, kept.id)
    view = app.get_job(kept.id)
    logs = {s.id: "\n".join(app.stage_logs(kept.id, s.id, follow=False))
            for s in view.stages if s.state == AttemptState.FAILED}
    assert view.job.state == JobState.SUCCEEDED, (view.job.message, logs)
    states = {s.id: s.state for s in view.stages}
    assert all(states[s] == AttemptState.SKIPPED for s in BRANCH)
    assert {a.stage_id for a in view.attempts} == {"r1/sft", "r1/safe_dpo",
                                                   "r1/evaluate_safe_dpo"}
    gate = next(g for g in view.gates if g.on_fail == "escalate")
    assert gate.state == GateState.PASSED and 0.0 <= gate.observed <= 1.0
    assert view.job.conditions["Escalation"].startswith("not needed")
    sft_model = Path(app.store.get_stage(kept.id, "r1/sft").output_dir) / "model"

    escalated = app.create_job(escalation_spec(
        "escalated", {"op": "<", "value": 0.0}, sft={"use": str(sft_model)}), project=None,
        request_id="", validate_only=False)
    assert escalated is not None
    run_to_end(app, escalated.id)
    view = app.get_job(escalated.id)
    assert view.job.state == JobState.SUCCEEDED, view.job.message
    states = {s.id: s.state for s in view.stages}
    assert all(states[s] == AttemptState.SUCCEEDED for s in BRANCH)
    gate = next(g for g in view.gates if g.on_fail == "escalate")
    assert gate.state == GateState.ESCALATED
    assert view.job.conditions["Escalation"].startswith("escalated")
    safe_dpo_model = str(Path(app.store.get_stage(escalated.id, "r1/safe_dpo").output_dir)
                         / "model")
    ppo = app.store.get_stage(escalated.id, "r1/ppo_lag")
    assert ppo.config["actor_path"] == ppo.config["reference_path"] == safe_dpo_model
    assert (Path(ppo.output_dir) / "model" / "config.json").exists()
    final = app.store.get_stage(escalated.id, "r1/evaluate")
    assert final.result["latest_version"] == "round-1"
    assert 0.0 <= final.result["eval/harmful_rate"] <= 1.0
