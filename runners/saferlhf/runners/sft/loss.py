"""SFT loss (reference §2): next-token cross-entropy, token mean over response tokens.

Labels are the input ids with prompt tokens and padding set to IGNORE (-100); the mean runs over
all non-ignored label tokens of the micro-batch (a token-level mean, like the HF causal-LM loss).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def sft_loss_terms(
    logits: torch.Tensor,  # (B, L, V) next-token logits at each position
    labels: torch.Tensor,  # (B, L) input ids with prompt/pad = -100
) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ_t −log p(x_{t+1} | x_{≤t}) over response tokens, number of those tokens).

    Split-batch and cross-rank safe: sum both parts over shards, then divide.
    """
    shift_logits = logits[:, :-1, :].float()  # (B, L-1, V)
    shift_labels = labels[:, 1:]  # (B, L-1)
    nll = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1),
        ignore_index=IGNORE_INDEX, reduction="sum",
    )
    count = (shift_labels != IGNORE_INDEX).sum()
    return nll, count


def sft_loss(
    logits: torch.Tensor,  # (B, L, V)
    labels: torch.Tensor,  # (B, L)
) -> torch.Tensor:
    """L = Σ_{i,t: label≠-100} −log p(y_{i,t} | y_{i,<t}) / #{label≠-100}  (token_mean).

    A batch with no response token gives 0 (with a graph), not NaN.
    """
    nll, count = sft_loss_terms(logits, labels)
    return nll / count.clamp(min=1)
