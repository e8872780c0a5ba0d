"""The cost-model stage (reference §4): a score model on safety preferences with per-response
safe/unsafe labels; cost > 0 means unsafe."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from saferlhf.runners.common.batching import PairCollator, encode_safety_preferences
from saferlhf.runners.common.config import CostConfig
from saferlhf.runners.common.dist import all_gather_cat, weighted_mean
from saferlhf.runners.common.preference_stage import run_preference_stage
from saferlhf.runners.common.stage_data import eval_batches
from saferlhf.runners.cost.loss import cost_sequence_loss, cost_sign, cost_token_loss, sign_accuracy
from saferlhf.runners.reward.loss import divergence_spans, pair_accuracy
from saferlhf.runners.reward.train import pair_forward
from torch import nn


class CostTask:
    score_type = "cost"

    def __init__(self, cfg: CostConfig, collate: PairCollator, tokenizer) -> None:
        self.cfg, self.collate, self.tokenizer = cfg, collate, tokenizer

    def loss(self, module: nn.Module, batch: dict[str, torch.Tensor]):
        """first = safer, second = unsafer (PairCollator order)."""
        (ss, se, si), (us, ue, ui) = pair_forward(module, batch)
        k_s, k_u = cost_sign(batch["first_is_safe"]), cost_sign(batch["second_is_safe"])
        eta = self.cfg.regularization
        if self.cfg.loss == "sequence-wise":
            loss = cost_sequence_loss(se, ue, k_s, k_u, eta)
        else:
            span = divergence_spans(batch["first_input_ids"], batch["second_input_ids"], si, ui)
            loss = cost_token_loss(ss, us, k_s, k_u, span, eta)
        metrics = {
            "train/accuracy": pair_accuracy(ue, se),
            "train/accuracy_sign": sign_accuracy(torch.cat([se, ue]), torch.cat([k_s, k_u])),
        }
        return loss, metrics

    def evaluate(self, module: nn.Module, samples: Sequence) -> dict[str, float]:
        device = next(module.parameters()).device
        sums = torch.zeros(3)  # correct pairs, correct signs, pairs
        costs = []
        for batch, valid in eval_batches(samples, self.cfg.eval_batch_size, self.collate):
            batch = {k: v.to(device) for k, v in batch.items()}
            (_, se, _), (_, ue, _) = pair_forward(module, batch)
            valid = valid.to(device)
            k_s, k_u = cost_sign(batch["first_is_safe"]), cost_sign(batch["second_is_safe"])
            sums += torch.tensor([
                float(((ue > se) & valid).sum()),
                float(((k_s * se > 0) & valid).sum() + ((k_u * ue > 0) & valid).sum()),
                float(valid.sum()),
            ])
            costs += [se[valid].float(), ue[valid].float()]
        every = all_gather_cat(torch.cat(costs) if costs else torch.zeros(0, device=device))
        return {
            "eval/accuracy": float(weighted_mean(sums[0], sums[2])),
            "eval/accuracy_sign": float(weighted_mean(sums[1], 2 * sums[2])),
            "eval/cost_mean": float(every.mean()) if every.numel() else float("nan"),
            "eval/cost_std": float(every.std(unbiased=False)) if every.numel() else float("nan"),
        }

    def save(self, bare: nn.Module, out_dir: str, state_dict) -> None:
        bare.save_pretrained(out_dir, self.tokenizer, state_dict=state_dict)


def run(cfg: CostConfig, local_rank: int | None = None) -> None:
    run_preference_stage(cfg, local_rank, kind="safety_preference",
                         encode=encode_safety_preferences, make_task=CostTask)
