"""Tiny models for the evaluate-stage tests, all built from config: sft/ and v2/ policies (v2 =
sft with perturbed weights) and reward/ and cost/ score models with random heads."""

from __future__ import annotations

from pathlib import Path


def build_eval_models(root: Path) -> Path:
    import torch
    from saferlhf.runners.common.config import ModelSpec
    from saferlhf.runners.common.models import build_policy, save_model
    from saferlhf.runners.common.score_model import ScoreModel
    from saferlhf.runners.common.template import format_prompt
    from saferlhf.runners.synthetic import dataset

    texts = [format_prompt(r.prompt, "") + r.response for r in dataset("sft", size=120, seed=0)]
    spec = ModelSpec(path="builtin:tiny-gpt2", n_layer=1, n_embd=32, n_head=2, vocab_size=256,
                     max_position_embeddings=96)
    torch.manual_seed(0)
    model, tokenizer = build_policy(spec, texts)
    save_model(model, tokenizer, root / "sft")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    save_model(model, tokenizer, root / "v2")
    for kind in ("reward", "cost"):
        score = ScoreModel.from_policy(model, score_type=kind)
        torch.nn.init.normal_(score.score_head.weight, std=1.0)
        score.save_pretrained(root / kind, tokenizer)
    return root
