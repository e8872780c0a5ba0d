"""Tiny offline models for PPO-Lag smoke runs, tests and bench/ppo_step.py (no download).

A builtin tiny GPT-2 / LLaMA with a BPE tokenizer trained on synthetic SFT texts, saved as a HF
folder; random score models (RM/CM) on its backbone; and a resolved stage config around them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from saferlhf.runners.common.config import ModelSpec, PPOLagConfig


def synthetic_texts(n: int = 400, seed: int = 0) -> list[str]:
    from saferlhf.runners.common.template import format_prompt, format_training_text
    from saferlhf.runners.synthetic import dataset

    recs = dataset("sft", size=n, seed=seed)
    return [format_training_text(format_prompt(r.prompt, "</s>"), r.response, "</s>")
            for r in recs]


def build_tiny_policy(out_dir: str | Path, *, kind: str = "builtin:tiny-gpt2", n_layer: int = 2,
                      n_embd: int = 64, n_head: int = 2, vocab_size: int = 400,
                      context: int = 64, seed: int = 0) -> Path:
    """A random tiny causal LM + tokenizer saved to `out_dir`."""
    import torch
    from saferlhf.runners.common.models import build_policy, save_model

    torch.manual_seed(seed)
    spec = ModelSpec(path=kind, n_layer=n_layer, n_embd=n_embd, n_head=n_head,
                     vocab_size=vocab_size, max_position_embeddings=context)
    model, tokenizer = build_policy(spec, synthetic_texts())
    save_model(model, tokenizer, out_dir)
    return Path(out_dir)


def build_tiny_score_model(out_dir: str | Path, policy_dir: str | Path, score_type: str,
                           *, seed: int = 0) -> Path:
    """A random score model on the policy's backbone (the RM/CM stage's folder layout)."""
    import torch
    from saferlhf.runners.common.score_model import ScoreModel
    from transformers import AutoTokenizer

    torch.manual_seed(seed)
    model = ScoreModel.from_policy(str(policy_dir), score_type=score_type)  # type: ignore[arg-type]
    model.save_pretrained(out_dir, AutoTokenizer.from_pretrained(str(policy_dir)))
    return Path(out_dir)


def tiny_stage_config(policy_dir: str | Path, output_dir: str | Path, **overrides: Any
                      ) -> PPOLagConfig:
    """A small PPO-Lag stage config (oracle rewards unless overridden)."""
    raw: dict[str, Any] = {
        "kind": "ppo_lag", "output_dir": str(output_dir),
        "actor_path": str(policy_dir), "reference_path": str(policy_dir),
        "prompts": [{"format": "synthetic", "split": "prompts", "size": 64}],
        "reward_source": "oracle", "threshold": -0.5,
        "iterations": 2, "batch_size": 8, "max_length_tokens": 48,
        "rollout": {"prompt_batch_size": 8, "max_new_tokens": 8},
        "actor_optim": {"lr": 1e-3, "lr_scheduler": "constant"},
        "critic_optim": {"lr": 1e-3, "lr_scheduler": "constant"},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return PPOLagConfig.model_validate(raw)
