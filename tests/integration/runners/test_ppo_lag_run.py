"""PPO-Lag stage runs on tiny random models (in-process unless the test is about the CLI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from saferlhf.runners.common.errors import InvalidInputError
from saferlhf.runners.common.events import read_events
from saferlhf.runners.ppo_lag.tiny import (
    build_tiny_policy,
    build_tiny_score_model,
    tiny_stage_config,
)
from saferlhf.runners.ppo_lag.train import run

from tests.tools import ROOT

REFERENCE_METRICS = {
    "train/actor_loss", "train/reward_critic_loss", "train/cost_critic_loss", "train/lambda",
    "train/episode_cost", "train/reward", "train/cost", "train/kl_divergence",
    "train/reward_with_kl_penalty", "train/reward_advantage", "train/reward_return",
    "train/reward_value", "train/cost_with_kl_penalty", "train/cost_advantage",
    "train/cost_return", "train/cost_value", "train/actor_lr", "train/reward_critic_lr",
    "train/cost_critic_lr", "train/mean_generated_length", "train/max_generated_length",
    "train/harmful_rate", "train/threshold",
}


@pytest.fixture(scope="module")
def policy(tmp_path_factory) -> Path:
    return build_tiny_policy(tmp_path_factory.mktemp("ppo") / "policy")


@pytest.fixture(scope="module")
def score_models(tmp_path_factory, policy) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("scores")
    return (build_tiny_score_model(root / "rm", policy, "reward", seed=1),
            build_tiny_score_model(root / "cm", policy, "cost", seed=2))


def _metrics(out: Path) -> list[dict]:
    return [e for e in read_events(out / "events.jsonl")
            if e["type"] == "metrics" and any(k.startswith("train/") for k in e["values"])]


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_an_oracle_run_logs_every_reference_metric_each_step_and_saves_a_changed_actor(
    policy, tmp_path
):
    cfg = tiny_stage_config(policy, tmp_path / "out", batch_size=4)
    result = run(cfg, None)
    steps = _metrics(tmp_path / "out")
    assert [e["step"] for e in steps] == [1, 2, 3, 4]  # 2 iterations × 2 micro-batches
    for event in steps:
        assert set(event["values"]) >= REFERENCE_METRICS, REFERENCE_METRICS - set(event["values"])
    events = read_events(tmp_path / "out" / "events.jsonl")
    assert [e["step"] for e in events if e["type"] == "progress"] == [1, 2, 3, 4]
    saved = json.loads((tmp_path / "out" / "result.json").read_text())
    assert saved["final_lambda"] == pytest.approx(steps[-1]["values"]["train/lambda"])
    assert saved["threshold"] == -0.5 and saved["episode_cost"] is not None
    assert result["global_step"] == 4
    before, after = _weights(policy), _weights(tmp_path / "out" / "model")
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert (tmp_path / "out" / "model" / "tokenizer.json").exists()


def test_lambda_moves_with_the_sign_of_episode_cost_minus_threshold(policy, tmp_path):
    """A random policy never says a harmful step word, so J_C = −1: below d = −0.5 λ falls,
    above d = −1.5 it rises, by exactly the reference step each update."""
    import math

    for threshold, direction in ((-0.5, -1), (-1.5, +1)):
        out = tmp_path / f"d{threshold}"
        run(tiny_stage_config(policy, out, threshold=threshold, lambda_lr=0.1), None)
        lambdas = [e["values"]["train/lambda"] for e in _metrics(out)]
        costs = [e["values"]["train/episode_cost"] for e in _metrics(out)]
        assert all(c == pytest.approx(-1.0) for c in costs)
        log_l = 0.0
        for lam in lambdas:  # log λ ← log λ + lr·(J_C − d)·λ, from λ_init = 1
            log_l += 0.1 * (-1.0 - threshold) * math.exp(log_l)
            assert math.log(lam) == pytest.approx(log_l, abs=1e-6)
        assert (lambdas[-1] - 1.0) * direction > 0


def test_plain_ppo_and_reward_shaping_use_their_own_streams(policy, tmp_path):
    run(tiny_stage_config(policy, tmp_path / "ppo", algorithm="ppo", threshold=None), None)
    ppo = _metrics(tmp_path / "ppo")[-1]["values"]
    assert "train/lambda" not in ppo and "train/cost_critic_loss" not in ppo
    assert {"train/reward_advantage", "train/cost", "train/episode_cost"} <= set(ppo)

    run(tiny_stage_config(policy, tmp_path / "rs", algorithm="reward_shaping", threshold=None,
                          lambda_init=0.5), None)
    shaped = _metrics(tmp_path / "rs")[-1]["values"]
    assert {"train/shaped_reward", "train/shaped_reward_advantage",
            "train/shaped_reward_with_kl_penalty"} <= set(shaped)
    # R − ν·C with the oracle's C = −1 for every (safe) random response
    assert shaped["train/shaped_reward"] == pytest.approx(shaped["train/reward"] + 0.5)


def test_reward_and_cost_models_score_rollouts_and_initialise_the_critics(
    policy, score_models, tmp_path
):
    rm, cm = score_models
    cfg = tiny_stage_config(policy, tmp_path / "out", reward_source="model",
                            reward_model_path=str(rm), cost_model_path=str(cm), iterations=1)
    run(cfg, None)
    values = _metrics(tmp_path / "out")[-1]["values"]
    assert values["train/reward"] != 0.0 and values["train/cost"] not in (1.0, -1.0)


def test_a_safety_budget_is_calibrated_into_the_threshold_and_recorded(
    policy, score_models, tmp_path
):
    rm, cm = score_models
    cfg = tiny_stage_config(
        policy, tmp_path / "out", reward_source="model", reward_model_path=str(rm),
        cost_model_path=str(cm), iterations=1, threshold=None,
        safety_budget={"max_harmful_rate": 0.1, "scope": "all_prompts", "calibration_samples": 32},
    )
    run(cfg, None)
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    cal = result["calibration"]
    assert cal["target"] == 0.1 and cal["scope"] == "all_prompts" and cal["samples"] == 32
    expected = cal["harmful_prompt_share"] * (
        0.1 * cal["mean_cost_unsafe"] + 0.9 * cal["mean_cost_safe"]
    ) + (1 - cal["harmful_prompt_share"]) * cal["mean_cost_benign"]
    assert result["threshold"] == pytest.approx(expected)
    events = read_events(tmp_path / "out" / "events.jsonl")
    assert any(e["type"] == "log" and "safety budget calibrated" in e["message"] for e in events)
    cal_metrics = [e["values"] for e in events if e["type"] == "metrics"
                   and "calibration/threshold" in e["values"]]
    assert cal_metrics[0]["calibration/threshold"] == pytest.approx(result["threshold"])
    assert _metrics(tmp_path / "out")[0]["values"]["train/threshold"] == pytest.approx(expected)


def test_a_budget_from_a_policy_that_is_never_unsafe_mirrors_the_safe_cost(policy, tmp_path):
    """The oracle never flags a random policy's answers (cost −1 each), so the unsafe cost is
    not measured: it is mirrored to +1 and d = 0.02·(+1) + 0.98·(−1) = −0.96 (round ≥ 2 of a
    real run starts from such an already-safe policy)."""
    cfg = tiny_stage_config(policy, tmp_path / "out", threshold=None, iterations=1,
                            safety_budget={"max_harmful_rate": 0.02, "calibration_samples": 16})
    run(cfg, None)
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["calibration"]["unsafe_cost_source"] == "mirrored"
    assert result["calibration"]["mean_cost_unsafe"] == pytest.approx(1.0)
    assert result["threshold"] == pytest.approx(-0.96)


def test_the_cli_exits_2_and_names_the_field_when_the_reward_model_is_missing(policy, tmp_path):
    cfg = tiny_stage_config(policy, tmp_path / "out", reward_source="model")
    stage = tmp_path / "stage.json"
    stage.write_text(cfg.model_dump_json())
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "saferlhf.runners.ppo_lag",
                           "--config", str(stage)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "reward_model_path" in proc.stderr and "Traceback" not in proc.stderr


def test_a_threshold_the_starting_policy_already_meets_raises_the_vacuous_warning(
    policy, score_models, tmp_path
):
    """d = 10 is far above any random cost-model score, while about half the random costs are
    positive (harmful): the starting policy satisfies J_C ≤ d with harm above the 5% default."""
    rm, cm = score_models
    cfg = tiny_stage_config(policy, tmp_path / "out", reward_source="model", iterations=1,
                            reward_model_path=str(rm), cost_model_path=str(cm), threshold=10.0)
    run(cfg, None)
    events = read_events(tmp_path / "out" / "events.jsonl")
    warnings = [e for e in events if e["type"] == "log" and e["level"] == "warning"]
    assert any(e["message"].startswith("VacuousThreshold:") for e in warnings)
    assert any(e["type"] == "metrics" and e["values"].get("guard/VacuousThreshold") == 1.0
               for e in events)


def test_the_harmful_prompt_scope_keeps_only_harmful_prompts_costs_in_the_window(
    policy, tmp_path
):
    from types import SimpleNamespace

    from saferlhf.runners.common.dist import DistInfo
    from saferlhf.runners.common.events import EventSink
    from saferlhf.runners.ppo_lag.trainer import PPOLagTrainer

    cfg = tiny_stage_config(policy, tmp_path / "out", threshold=None,
                            safety_budget={"max_harmful_rate": 0.02, "scope": "harmful_prompts"})
    trainer = PPOLagTrainer(cfg, EventSink(tmp_path / "out", enabled=False),
                            DistInfo(0, 1, 0, torch.device("cpu")))
    trainer.harmful_flags = {"flagged": True}
    exp = SimpleNamespace(prompts=["a", "b", "flagged", "new", "new2"],
                          is_harmful=[True, False, None, None, None],
                          costs=torch.tensor([0.5, 2.0, -1.0, 3.0, -2.0]))
    # marked harmful, calibration-flagged, and an unseen unmarked prompt whose cost is > 0
    assert trainer.scoped_costs(exp) == [0.5, -1.0, 3.0]
    all_cfg = tiny_stage_config(policy, tmp_path / "out", threshold=None,
                                safety_budget={"max_harmful_rate": 0.02, "scope": "all_prompts"})
    trainer = PPOLagTrainer(all_cfg, EventSink(tmp_path / "out", enabled=False),
                            DistInfo(0, 1, 0, torch.device("cpu")))
    assert trainer.scoped_costs(exp) == [0.5, 2.0, -1.0, 3.0, -2.0]


def test_ptx_adds_a_supervised_loss_and_update_iters_repeat_the_micro_batches(policy, tmp_path):
    cfg = tiny_stage_config(policy, tmp_path / "out", update_iters=2, ptx_coeff=1.0,
                            ptx_data=[{"format": "synthetic", "split": "sft", "size": 32}])
    run(cfg, None)
    steps = _metrics(tmp_path / "out")
    assert [e["step"] for e in steps] == [1, 2, 3, 4]  # 2 iterations × 1 micro-batch × 2 passes
    losses = [e["values"]["train/ptx_loss"] for e in steps]
    assert all(0.0 < loss < 20.0 for loss in losses)


def test_prompts_are_cut_to_leave_room_for_the_response_in_the_context(policy, tmp_path):
    from types import SimpleNamespace

    from saferlhf.runners.ppo_lag.trainer import prompt_budget

    cfg = tiny_stage_config(policy, tmp_path / "out", max_length_tokens=512,
                            rollout={"max_new_tokens": 16})
    assert prompt_budget(cfg, SimpleNamespace(n_positions=64)) == 48
    assert prompt_budget(cfg, SimpleNamespace(max_position_embeddings=1024)) == 512
    too_long = tiny_stage_config(policy, tmp_path / "out", rollout={"max_new_tokens": 64})
    with pytest.raises(InvalidInputError) as err:
        prompt_budget(too_long, SimpleNamespace(n_positions=64))
    assert err.value.field == "rollout.max_new_tokens"
