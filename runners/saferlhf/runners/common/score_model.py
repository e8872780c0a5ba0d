"""The score model (reference §3.1): a transformer backbone without its LM head + Linear(hidden, 1).

`scores` is the head at every position (B, L); `end_scores` is the score at the LAST position whose
attention mask is 1 — the EOS of a right-padded training sample, and the same token under left
padding, because positions are computed from the mask (so a sequence scores the same whatever its
padding or batch). Reward, cost and critic models share this class; `score_type` picks the
normaliser (reward: affine, cost: scale only — keeps the sign, critic: none), and the normaliser
statistics are kept in the saved config so PPO-Lag can use them.

Saved layout (`save_pretrained`): `config.json` (the backbone's, plus the score fields below),
`model.safetensors` (backbone.* and score_head.* tensors), the tokenizer files.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from saferlhf.runners.common.dist import all_gather_cat, is_rank0
from torch import nn

ScoreType = Literal["reward", "cost", "critic"]
NormalizerType = Literal["ema", "running"] | None
SCORE_FIELDS = ("score_type", "do_normalize", "normalizer_type", "momentum", "mean", "var", "count")
WEIGHTS_NAME = "model.safetensors"


@dataclass
class ScoreOutput:
    scores: torch.Tensor  # (B, L) float32, per-position scores
    end_scores: torch.Tensor  # (B,) score at the last attention-mask-1 token
    end_index: torch.Tensor  # (B,) that token's index


def end_indices(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last 1 in each row of a (B, L) mask; works for left and right padding."""
    length = attention_mask.shape[-1]
    flipped_first = attention_mask.long().flip(-1).argmax(dim=-1)  # (B,)
    return length - 1 - flipped_first


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that start at 0 on the first real token (left padding safe). (B, L)"""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


class ScoreModel(nn.Module):
    def __init__(
        self,
        backbone: nn.Module,
        *,
        score_type: ScoreType = "reward",
        do_normalize: bool = False,
        normalizer_type: NormalizerType = "ema",
        momentum: float = 0.9,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.config = backbone.config
        hidden = _hidden_size(self.config)
        self.score_head = nn.Linear(hidden, 1, bias=True)
        nn.init.zeros_(self.score_head.bias)
        self.config.score_type = score_type
        self.config.do_normalize = do_normalize
        self.config.normalizer_type = normalizer_type
        self.config.momentum = momentum
        self.config.mean = getattr(self.config, "mean", 0.0) or 0.0
        self.config.var = getattr(self.config, "var", 1.0) or 1.0
        self.config.count = getattr(self.config, "count", 0) or 0
        params = inspect.signature(backbone.forward).parameters
        self._takes_positions = "position_ids" in params

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_policy(
        cls, path_or_model, *, score_type: ScoreType = "reward", **kwargs
    ) -> ScoreModel:
        """Backbone from a causal-LM folder or instance (the LM head is dropped), fresh head.
        A LoRA adapter folder gives its merged policy's backbone."""
        from saferlhf.runners.common.adapters import is_adapter_folder
        from transformers import AutoModel

        if isinstance(path_or_model, str | Path) and is_adapter_folder(path_or_model):
            from saferlhf.runners.common.models import load_policy

            backbone = load_policy(path_or_model)[0].base_model
        elif isinstance(path_or_model, str | Path):
            backbone = AutoModel.from_pretrained(str(path_or_model), dtype=torch.float32)
        else:
            from saferlhf.runners.common.models import unwrap

            backbone = copy.deepcopy(unwrap(path_or_model).base_model)
        for field in SCORE_FIELDS:  # a policy config never carries score stats
            if hasattr(backbone.config, field):
                delattr(backbone.config, field)
        return cls(backbone, score_type=score_type, **kwargs)

    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, score_type: ScoreType | None = None,
        do_normalize: bool | None = None,
    ) -> ScoreModel:
        """Load a folder written by `save_pretrained`; `score_type` may be overridden (critics
        start from RM/CM with score_type critic and no normaliser, reference §5.1)."""
        from safetensors.torch import load_file
        from transformers import AutoConfig, AutoModel

        path = Path(path)
        raw = json.loads((path / "config.json").read_text())
        if "score_type" not in raw:
            raise ValueError(
                f"{path} is not a score model folder (config.json has no score_type); "
                "use ScoreModel.from_policy to start a score model from a policy"
            )
        config = AutoConfig.from_pretrained(str(path))
        backbone = AutoModel.from_config(config, dtype=torch.float32)
        kind = score_type or raw["score_type"]
        model = cls(
            backbone,
            score_type=kind,
            do_normalize=raw.get("do_normalize", False) if do_normalize is None else do_normalize,
            normalizer_type=None if kind == "critic" else raw.get("normalizer_type"),
            momentum=raw.get("momentum", 0.9),
        )
        state = load_file(str(path / WEIGHTS_NAME))
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith(("position_ids", "_extra_state"))]
        if missing or unexpected:
            raise ValueError(
                f"{path}: weights do not match: missing {missing}, unexpected {unexpected}"
            )
        model.config.mean, model.config.var = raw.get("mean", 0.0), raw.get("var", 1.0)
        model.config.count = raw.get("count", 0)
        return model

    def save_pretrained(self, out_dir: str | Path, tokenizer=None, *, state_dict=None) -> None:
        """Write config, weights and tokenizer (rank 0 only). A backbone with LoRA adapters is
        saved merged (W + s·B·A), so the folder has the usual layout."""
        if not is_rank0():
            return
        from saferlhf.runners.common.lora import engine_weights
        from safetensors.torch import save_file

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.config.save_pretrained(out)
        state = dict(engine_weights(self, state_dict))
        save_file({k: v.detach().cpu().contiguous().clone() for k, v in state.items()
                   if isinstance(v, torch.Tensor)}, str(out / WEIGHTS_NAME))
        if tokenizer is not None:
            tokenizer.save_pretrained(out)

    # -- normaliser stats travel in state_dict (checkpoints) as extra state ------------------
    def get_extra_state(self) -> dict:
        return {k: getattr(self.config, k) for k in ("mean", "var", "count")}

    def set_extra_state(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self.config, key, value)

    # -- forward -----------------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.Tensor,  # (B, L)
        attention_mask: torch.Tensor,  # (B, L), 1 = real token
    ) -> ScoreOutput:
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self._takes_positions:
            kwargs["position_ids"] = positions_from_mask(attention_mask)
        hidden = self.backbone(**kwargs).last_hidden_state  # (B, L, H)
        scores = self.score_head(hidden).squeeze(-1).float()  # (B, L)
        end_index = end_indices(attention_mask)  # (B,)
        end_scores = scores.gather(1, end_index.unsqueeze(1)).squeeze(1)  # (B,)
        if self.training and self.config.normalizer_type is not None:
            self._update_stats(end_scores)
        if self.config.do_normalize:
            scores, end_scores = self.normalize(scores), self.normalize(end_scores)
        return ScoreOutput(scores=scores, end_scores=end_scores, end_index=end_index)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """reward: (x − μ)/(σ + 1e-8); cost: x/(σ + 1e-8) (sign kept); critic: x."""
        std = math.sqrt(max(float(self.config.var), 0.0))
        if self.config.score_type == "reward":
            return (x - float(self.config.mean)) / (std + 1e-8)
        if self.config.score_type == "cost":
            return x / (std + 1e-8)
        return x

    @torch.no_grad()
    def _update_stats(self, end_scores: torch.Tensor) -> None:
        """EMA (μ ← mμ + (1−m)·batch mean, same for var) or running mean/var (parallel merge),
        from the end scores of every rank."""
        batch = all_gather_cat(end_scores.detach().float())
        n = batch.numel()
        if n == 0:
            return
        b_mean, b_var = batch.mean().item(), batch.var(unbiased=False).item()
        cfg = self.config
        if cfg.normalizer_type == "ema":
            m = float(cfg.momentum)
            if cfg.count == 0:
                cfg.mean, cfg.var = b_mean, b_var
            else:
                cfg.mean = m * cfg.mean + (1 - m) * b_mean
                cfg.var = m * cfg.var + (1 - m) * b_var
        else:  # running: Chan et al. parallel variance
            total = cfg.count + n
            delta = b_mean - cfg.mean
            m2 = cfg.var * cfg.count + b_var * n + delta**2 * cfg.count * n / total
            cfg.mean = cfg.mean + delta * n / total
            cfg.var = m2 / total
        cfg.count = int(cfg.count + n)


def _hidden_size(config) -> int:
    for name in ("hidden_size", "n_embd", "d_model", "dim"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    raise ValueError(f"cannot find the hidden size in {type(config).__name__}")


@torch.no_grad()
def score_texts(
    model: ScoreModel, tokenizer, texts: Sequence[str], batch_size: int = 16,
    max_length: int | None = None,
) -> torch.Tensor:
    """End scores (N,) of whole texts (prompt + response + EOS), in eval mode, in batches."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    limit = max_length or getattr(tokenizer, "model_max_length", None) or 512
    limit = min(int(limit), 1_000_000)
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(
            list(texts[start : start + batch_size]), padding=True, truncation=True,
            max_length=limit, return_tensors="pt",
        )
        result = model(enc["input_ids"].to(device), enc["attention_mask"].to(device))
        out.append(result.end_scores.cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


def decode_sequences(tokenizer, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[str]:
    """Policy token ids (B, L) → texts without special tokens (reference §5.1 re-tokenisation)."""
    texts = []
    for ids, mask in zip(input_ids, attention_mask, strict=True):
        texts.append(tokenizer.decode(ids[mask.bool()].tolist(), skip_special_tokens=True))
    return texts


def rescore(
    sequences_text: Sequence[str], model: ScoreModel, tokenizer, batch_size: int = 16,
    max_length: int | None = None,
) -> torch.Tensor:
    """Score texts decoded from another tokenizer: re-encode with the score model's own tokenizer,
    EOS appended where it has one (reference §5.1). Returns end scores (N,)."""
    eos = getattr(tokenizer, "eos_token", None)
    texts = [t if not eos or t.endswith(eos) else t + eos for t in sequences_text]
    return score_texts(model, tokenizer, texts, batch_size=batch_size, max_length=max_length)
