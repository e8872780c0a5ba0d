"""The reward-model stage (reference §3): a score model on helpfulness preferences.

The backbone is the SFT policy (`policy_path`, LM head dropped) with its tokenizer — or, with
`init_from: model`, another local model folder (e.g. an encoder) with its own tokenizer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from saferlhf.runners.common.batching import PairCollator, encode_preferences
from saferlhf.runners.common.config import RewardConfig
from saferlhf.runners.common.dist import all_gather_cat, weighted_mean
from saferlhf.runners.common.preference_stage import run_preference_stage
from saferlhf.runners.common.stage_data import eval_batches
from saferlhf.runners.reward.loss import (
    bt_sequence_loss,
    bt_token_loss,
    divergence_spans,
    pair_accuracy,
)
from torch import nn


def pair_forward(module: nn.Module, batch: dict[str, torch.Tensor]):
    """One forward over both sides: (first out, second out) as (scores (B, L), end (B,), idx)."""
    ids = torch.cat([batch["first_input_ids"], batch["second_input_ids"]])  # (2B, L)
    mask = torch.cat([batch["first_attention_mask"], batch["second_attention_mask"]])  # (2B, L)
    out = module(ids, mask)
    b = batch["first_input_ids"].shape[0]
    return (
        (out.scores[:b], out.end_scores[:b], out.end_index[:b]),
        (out.scores[b:], out.end_scores[b:], out.end_index[b:]),
    )


class RewardTask:
    score_type = "reward"

    def __init__(self, cfg: RewardConfig, collate: PairCollator, tokenizer) -> None:
        self.cfg, self.collate, self.tokenizer = cfg, collate, tokenizer

    def loss(self, module: nn.Module, batch: dict[str, torch.Tensor]):
        (bs, be, bi), (ws, we, wi) = pair_forward(module, batch)
        eta = self.cfg.regularization
        if self.cfg.loss == "sequence-wise":
            loss = bt_sequence_loss(be, we, eta)
        else:
            span = divergence_spans(batch["first_input_ids"], batch["second_input_ids"], bi, wi)
            loss = bt_token_loss(bs, ws, span, eta)
        return loss, {"train/accuracy": pair_accuracy(be, we)}

    def evaluate(self, module: nn.Module, samples: Sequence) -> dict[str, float]:
        device = next(module.parameters()).device
        correct, count, ends = torch.zeros(()), torch.zeros(()), []
        for batch, valid in eval_batches(samples, self.cfg.eval_batch_size, self.collate):
            batch = {k: v.to(device) for k, v in batch.items()}
            (_, be, _), (_, we, _) = pair_forward(module, batch)
            valid = valid.to(device)
            correct += ((be > we) & valid).sum().cpu()
            count += valid.sum().cpu()
            ends += [be[valid].float(), we[valid].float()]
        every = all_gather_cat(torch.cat(ends) if ends else torch.zeros(0, device=device))
        return {
            "eval/accuracy": float(weighted_mean(correct, count)),
            "eval/reward_mean": float(every.mean()) if every.numel() else float("nan"),
            "eval/reward_std": float(every.std(unbiased=False)) if every.numel() else float("nan"),
        }

    def save(self, bare: nn.Module, out_dir: str, state_dict) -> None:
        bare.save_pretrained(out_dir, self.tokenizer, state_dict=state_dict)


def run(cfg: RewardConfig, local_rank: int | None = None) -> None:
    run_preference_stage(cfg, local_rank, kind="preference", encode=encode_preferences,
                         make_task=RewardTask)
