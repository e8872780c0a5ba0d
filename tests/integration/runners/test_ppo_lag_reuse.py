"""reuse_rollout_forward: the first update's training forwards stand in for the rollout's actor
and critic forwards — with the same numbers, so a run is identical with it on or off."""

from __future__ import annotations

import pytest
import torch
from saferlhf.runners.common.events import read_events
from saferlhf.runners.ppo_lag.reuse import dropout_free, reuse_possible
from saferlhf.runners.ppo_lag.tiny import (
    build_tiny_policy,
    build_tiny_score_model,
    tiny_stage_config,
)
from saferlhf.runners.ppo_lag.train import run


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("reuse")
    policy = build_tiny_policy(root / "policy")
    return (policy, build_tiny_score_model(root / "rm", policy, "reward", seed=1),
            build_tiny_score_model(root / "cm", policy, "cost", seed=2))


def _run(models, out, **overrides):
    policy, rm, cm = models
    cfg = tiny_stage_config(policy, out, reward_source="model", reward_model_path=str(rm),
                            cost_model_path=str(cm), **overrides)
    run(cfg, None)
    steps = [e["values"] for e in read_events(out / "events.jsonl")
             if e["type"] == "metrics" and "train/actor_loss" in e["values"]]
    from safetensors.torch import load_file

    return steps, load_file(str(out / "model" / "model.safetensors"))


def test_a_run_is_the_same_with_and_without_reusing_the_rollout_forwards(models, tmp_path):
    """Two micro-batches per iteration (only the first one reuses) and two update iters (the
    second pass reads the old values the first one filled in)."""
    settings = {"batch_size": 4, "update_iters": 2}
    with_reuse, weights = _run(models, tmp_path / "on", reuse_rollout_forward=True, **settings)
    without, reference_weights = _run(models, tmp_path / "off", reuse_rollout_forward=False,
                                      **settings)
    assert len(with_reuse) == len(without) == 8  # 2 iterations × 2 micro-batches × 2 iters
    for a, b in zip(with_reuse, without, strict=True):
        assert set(a) == set(b)
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), key
    for name, tensor in weights.items():
        torch.testing.assert_close(tensor, reference_weights[name], rtol=1e-5, atol=1e-6)


def test_networks_with_dropout_do_not_reuse(models):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    small = {"n_layer": 1, "n_embd": 16, "n_head": 2, "vocab_size": 50}
    assert not dropout_free(GPT2LMHeadModel(GPT2Config(**small)))  # GPT-2's default 0.1
    assert dropout_free(GPT2LMHeadModel(GPT2Config(**small, resid_pdrop=0.0, embd_pdrop=0.0,
                                                   attn_pdrop=0.0)))
    llama = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
             "num_attention_heads": 2, "vocab_size": 50}
    assert dropout_free(LlamaForCausalLM(LlamaConfig(**llama)))
    # LLaMA's attention dropout is a config float, not a module
    assert not dropout_free(LlamaForCausalLM(LlamaConfig(**llama, attention_dropout=0.1)))
    assert not reuse_possible(GPT2LMHeadModel(GPT2Config(**small)), None)


def test_a_policy_with_dropout_trains_without_reuse_and_says_so(tmp_path):
    import json

    from saferlhf.runners.common.models import load_policy, save_model

    policy = build_tiny_policy(tmp_path / "policy")
    model, tok = load_policy(policy)
    model.config.resid_pdrop = 0.1
    save_model(model, tok, tmp_path / "dropout")
    cfg = tiny_stage_config(tmp_path / "dropout", tmp_path / "out", iterations=1)
    run(cfg, None)
    logs = [json.dumps(e) for e in read_events(tmp_path / "out" / "events.jsonl")
            if e["type"] == "log"]
    assert any("has dropout" in line for line in logs)
