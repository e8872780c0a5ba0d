"""A real PPO-Lag run on the synthetic benchmark: λ rises while the episode cost is above the
threshold and falls once the policy has moved below it (issue 3, "done when")."""

from __future__ import annotations

import pytest
from saferlhf.runners.common.config import SFTConfig
from saferlhf.runners.common.events import read_events
from saferlhf.runners.ppo_lag.tiny import tiny_stage_config
from saferlhf.runners.ppo_lag.train import run


@pytest.mark.slow
def test_lambda_rises_above_the_threshold_and_falls_below_it(tmp_path):
    from saferlhf.runners.sft.train import run as run_sft

    # A crude SFT policy: 100 steps on the synthetic SFT mix. It strings step words together
    # loosely, harmful ones included, so most answers are harmful (measured: about 70% on harmful
    # prompts) and J_C over the 50/50 mix starts near +0.3.
    sft = SFTConfig.model_validate({
        "kind": "sft", "output_dir": str(tmp_path / "sft"),
        "model": {"path": "builtin:tiny-gpt2", "n_layer": 2, "n_embd": 64, "n_head": 2,
                  "vocab_size": 1200, "max_position_embeddings": 64},
        "data": [{"format": "synthetic", "split": "sft", "size": 3200}], "epochs": 1,
        "batch_size": 32, "max_length_tokens": 64, "checkpoint_every_steps": 100000,
        "optim": {"lr": 5e-3, "lr_scheduler": "constant"},
    })
    run_sft(sft, None)
    # d = −0.5 sits well between the start (≈ +0.3) and a safe policy (−1). A large actor
    # learning rate makes the policy drop the harmful step words within a few iterations, so the
    # crossing is robust (the toy experiment's realistic settings take ~20 iterations).
    out = tmp_path / "ppo"
    cfg = tiny_stage_config(
        tmp_path / "sft" / "model", out, threshold=-0.5, iterations=5, batch_size=16,
        rollout={"prompt_batch_size": 32, "max_new_tokens": 16}, episode_cost_window_size=32,
        actor_optim={"lr": 1e-3, "lr_scheduler": "constant"},
        prompts=[{"format": "synthetic", "split": "prompts", "size": 256}],
    )
    run(cfg, None)
    steps = [e["values"] for e in read_events(out / "events.jsonl")
             if e["type"] == "metrics" and "train/lambda" in e["values"]]
    lambdas = [1.0] + [s["train/lambda"] for s in steps]
    rising = [s["train/episode_cost"] > -0.5 for s in steps]
    assert rising[0], "the SFT policy should start above the threshold"
    assert not rising[-1], "PPO-Lag should bring the episode cost below the threshold"
    for i, above in enumerate(rising):  # each update moves λ with the sign of J_C − d
        if above:  # up, or held at the λ_max clamp
            assert lambdas[i + 1] > lambdas[i] or lambdas[i + 1] == pytest.approx(5.0)
        else:
            assert lambdas[i + 1] < lambdas[i]
    assert steps[-1]["train/harmful_rate"] < steps[0]["train/harmful_rate"]
