"""PTX (pretraining-mix) batches for the actor (reference §5.7): supervised rows, cycled."""

from __future__ import annotations

import torch
from saferlhf.runners.common.batching import IGNORE_INDEX, encode_supervised
from saferlhf.runners.common.config import PPOLagConfig


def load_ptx(cfg: PPOLagConfig, tokenizer) -> list:
    from saferlhf.runners.common.data import load_records

    records = [rec for source in cfg.ptx_data
               for rec in load_records(source, "supervised", seed=cfg.seed)]
    return encode_supervised(records, tokenizer, cfg.max_length_tokens)


def batch_at(samples: list, step: int, batch_size: int, pad_id: int):
    """The micro-batch for rl step `step` (cycling): ids, mask (B, L), label mask (B, L−1)."""
    n = len(samples)
    picked = [samples[(step * batch_size + k) % n] for k in range(batch_size)]
    width = max(len(s.input_ids) for s in picked)
    ids = torch.full((batch_size, width), pad_id, dtype=torch.long)
    mask = torch.zeros(batch_size, width, dtype=torch.long)
    labels = torch.full((batch_size, width), IGNORE_INDEX, dtype=torch.long)
    for i, s in enumerate(picked):
        ids[i, : len(s.input_ids)] = torch.tensor(s.input_ids)
        mask[i, : len(s.input_ids)] = 1
        labels[i, : len(s.labels)] = torch.tensor(s.labels)
    label_mask = (labels[:, 1:] != IGNORE_INDEX).float()  # action t predicts token t+1
    return ids, mask, label_mask
