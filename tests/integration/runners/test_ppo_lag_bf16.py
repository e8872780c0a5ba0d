"""precision: bf16 (plain backend): the same update's losses within a stated tolerance of fp32,
and a whole run trains.

Tolerance: |loss_bf16 − loss_fp32| ≤ 3% of |loss_fp32| + 1e-3, on the same rollout (sampled
once in fp32, so only the precision differs). Measured on the tiny models: at most 0.5%.
"""

from __future__ import annotations

import copy

import pytest
import torch
from saferlhf.runners.common.generation import token_log_probs
from saferlhf.runners.common.rollout_engine.hf import HFEngine
from saferlhf.runners.ppo_lag.models import build_networks
from saferlhf.runners.ppo_lag.rollout import collect_experience, rollout_values
from saferlhf.runners.ppo_lag.setup import load_prompt_rows
from saferlhf.runners.ppo_lag.step import compute_advantages, rl_step
from saferlhf.runners.ppo_lag.timing import PhaseTimer
from saferlhf.runners.ppo_lag.tiny import (
    build_tiny_policy,
    build_tiny_score_model,
    tiny_stage_config,
)

RELATIVE, ABSOLUTE = 0.03, 1e-3
LOSSES = ("train/actor_loss", "train/reward_critic_loss", "train/cost_critic_loss")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("bf16")
    policy = build_tiny_policy(root / "policy")
    return (policy, build_tiny_score_model(root / "rm", policy, "reward", seed=1),
            build_tiny_score_model(root / "cm", policy, "cost", seed=2))


def _config(models, out, precision: str, **extra):
    policy, rm, cm = models
    return tiny_stage_config(policy, out, reward_source="model", reward_model_path=str(rm),
                             cost_model_path=str(cm), backend={"precision": precision}, **extra)


def _losses(nets, exp, cfg) -> dict[str, float]:
    """Every no-grad input of the update recomputed at this precision, then one update."""
    e, S = copy.copy(exp), exp.prompt_width
    with torch.no_grad():
        e.old_log_probs = token_log_probs(nets.actor, e.sequences, e.attention_mask, S - 1)
        e.ref_log_probs = token_log_probs(nets.reference, e.sequences, e.attention_mask, S - 1)
        scores = nets.scorer(e.prompts, e.responses, e.sequences, e.attention_mask)
        e.rewards, e.costs = scores.rewards, scores.costs
        e.reward_values, e.cost_values = rollout_values(
            nets.reward_critic, nets.cost_critic, e.sequences, e.attention_mask, S, PhaseTimer())
    return rl_step(nets, e, compute_advantages(e, cfg), 1.0, cfg, timer=PhaseTimer())


def test_bf16_losses_are_within_the_stated_tolerance_of_fp32_on_the_same_rollout(models,
                                                                                 tmp_path):
    losses, exp = {}, None
    for precision in ("fp32", "bf16"):
        cfg = _config(models, tmp_path / precision, precision)
        nets = build_networks(cfg, total_steps=10)
        if exp is None:
            rows = load_prompt_rows(cfg.prompts, nets.tokenizer.eos_token, cfg.seed)[:8]
            torch.manual_seed(1)
            exp = collect_experience(
                actor=nets.actor, reference=nets.reference, reward_critic=nets.reward_critic,
                cost_critic=nets.cost_critic, scorer=nets.scorer, tokenizer=nets.tokenizer,
                prompts=[r.text for r in rows], is_harmful=[None] * len(rows),
                rollout_params=cfg.rollout,
                engine=HFEngine(nets.actor.bare, nets.tokenizer,
                                precision=nets.actor.sampling_precision))
        losses[precision] = _losses(nets, exp, cfg)
    for key in LOSSES:
        full, half = losses["fp32"][key], losses["bf16"][key]
        assert abs(half - full) <= RELATIVE * abs(full) + ABSOLUTE, (key, full, half)
    assert any(losses["fp32"][k] != losses["bf16"][k] for k in LOSSES)  # bf16 really ran


def test_a_bf16_run_trains_the_actor(models, tmp_path):
    from saferlhf.runners.ppo_lag.train import run
    from safetensors.torch import load_file

    result = run(_config(models, tmp_path / "out", "bf16"), None)
    assert result["global_step"] == 2
    before = load_file(str(models[0] / "model.safetensors"))
    after = load_file(str(tmp_path / "out" / "model" / "model.safetensors"))
    assert all(after[k].dtype == torch.float32 for k in after)  # fp32 master weights
    assert any(not torch.equal(before[k], after[k]) for k in before)
