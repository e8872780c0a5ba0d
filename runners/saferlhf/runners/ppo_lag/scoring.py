"""End scores R and C of sampled responses: the reward/cost models, or the synthetic oracle.

`reward_source: oracle` scores with the synthetic benchmark's exact functions (R = helpfulness,
C = +1 harmful / −1 safe) — the toy experiment's setting. Otherwise the frozen RM/CM score the
rollout tokens directly; when their tokenizer differs from the actor's, the text is decoded and
re-encoded with theirs (reference §5.1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from saferlhf.runners.common.score_model import ScoreModel, decode_sequences, rescore


@dataclass(frozen=True)
class Scores:
    rewards: torch.Tensor  # size = (B,)
    costs: torch.Tensor | None  # size = (B,), None when no cost source exists (plain PPO, no CM)


class OracleScorer:
    """Exact synthetic-benchmark scores (needs templated synthetic prompts)."""

    def __call__(self, prompts: list[str], responses: list[str], sequences, mask) -> Scores:
        from saferlhf.runners.synthetic import judge

        verdicts = [judge(p, r) for p, r in zip(prompts, responses, strict=True)]
        device = sequences.device
        rewards = torch.tensor([v.helpfulness for v in verdicts], device=device)
        costs = torch.tensor([v.cost for v in verdicts], device=device)
        return Scores(rewards, costs)


class _ScoreModelScorer:
    def __init__(self, model, tokenizer, actor_tokenizer) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.actor_tokenizer = actor_tokenizer
        self.same_tokenizer = (
            tokenizer is None or tokenizer.get_vocab() == actor_tokenizer.get_vocab()
        )

    @torch.no_grad()
    def __call__(self, sequences: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # (B,)
        if self.same_tokenizer:
            return self.model(sequences, mask).end_scores.float()
        texts = decode_sequences(self.actor_tokenizer, sequences, mask)
        bare = getattr(self.model, "module", self.model)
        return rescore(texts, bare, self.tokenizer).to(sequences.device).float()


class ModelScorer:
    """R from the reward model, C from the cost model (when there is one)."""

    def __init__(self, reward_model, reward_tokenizer, cost_model, cost_tokenizer,
                 actor_tokenizer) -> None:
        self.reward = _ScoreModelScorer(reward_model, reward_tokenizer, actor_tokenizer)
        self.cost = (
            _ScoreModelScorer(cost_model, cost_tokenizer, actor_tokenizer)
            if cost_model is not None else None
        )

    def __call__(self, prompts, responses, sequences, mask) -> Scores:
        rewards = self.reward(sequences, mask)
        costs = self.cost(sequences, mask) if self.cost is not None else None
        return Scores(rewards, costs)


def load_score_model(path: str, score_type: str):
    """(ScoreModel in eval mode, its tokenizer or None) from a folder written by the RM/CM stage."""
    from pathlib import Path

    from transformers import AutoTokenizer

    model = ScoreModel.from_pretrained(path, score_type=score_type)  # type: ignore[arg-type]
    tokenizer = None
    if (Path(path) / "tokenizer_config.json").exists():
        tokenizer = AutoTokenizer.from_pretrained(path)
    return model.eval(), tokenizer
