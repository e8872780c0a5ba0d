"""Bradley–Terry reward-model losses (reference §3.2) and their accuracy metric.

Sequence-wise (the reference default):
    L = mean_i[ −log σ(r_w,i − r_l,i) ] + η · mean({r_w,i²} ∪ {r_l,i²})
Token-wise, per pair i over the span t ∈ [d_i, e_i] (d = first index where the two token
sequences differ, e = the later of the two end indices; pad positions inside are included):
    ℓ_i = mean_t[ −log σ(s_w,i,t − s_l,i,t) ] + η · mean_t({s_w,i,t²} ∪ {s_l,i,t²})
    L = mean_i ℓ_i                                                             (seq_mean)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bt_sequence_loss(
    better_end: torch.Tensor,  # (B,) end reward of the better response
    worse_end: torch.Tensor,  # (B,) end reward of the worse response
    regularization: float = 0.0,
) -> torch.Tensor:
    """Sequence-wise BT loss + η·mean(score²) (seq_mean)."""
    loss = -F.logsigmoid(better_end - worse_end).mean()
    if regularization > 0:
        loss = loss + regularization * torch.stack([better_end, worse_end]).square().mean()
    return loss


def divergence_spans(
    better_ids: torch.Tensor,  # (B, L) jointly right-padded
    worse_ids: torch.Tensor,  # (B, L)
    better_end_index: torch.Tensor,  # (B,) last mask-1 index of the better sequence
    worse_end_index: torch.Tensor,  # (B,)
) -> torch.Tensor:
    """(B, L) bool mask of t ∈ [d_i, e_i] (reference §3.2 token-wise span).

    d_i = first index where the sequences differ (clamped to e_i when they never do), e_i =
    max(end indices).
    """
    length = better_ids.shape[1]
    differs = better_ids != worse_ids  # (B, L)
    first = torch.where(differs.any(dim=1), differs.float().argmax(dim=1), length)  # (B,)
    end = torch.maximum(better_end_index, worse_end_index)  # (B,)
    first = torch.minimum(first, end)
    t = torch.arange(length, device=better_ids.device).unsqueeze(0)  # (1, L)
    return (t >= first.unsqueeze(1)) & (t <= end.unsqueeze(1))


def span_mean(values: torch.Tensor, span: torch.Tensor) -> torch.Tensor:
    """Per-row mean of values (B, L) over span (B, L) → (B,)."""
    span_f = span.to(values.dtype)
    return (values * span_f).sum(dim=1) / span_f.sum(dim=1).clamp(min=1.0)


def bt_token_loss(
    better_scores: torch.Tensor,  # (B, L) per-token rewards of the better sequence
    worse_scores: torch.Tensor,  # (B, L)
    span: torch.Tensor,  # (B, L) bool, from divergence_spans
    regularization: float = 0.0,
) -> torch.Tensor:
    """Token-wise BT loss (seq_mean over pairs of a token mean over each pair's span)."""
    per_pair = span_mean(-F.logsigmoid(better_scores - worse_scores), span)  # (B,)
    if regularization > 0:
        squares = (better_scores.square() + worse_scores.square()) / 2  # mean of the two sets
        per_pair = per_pair + regularization * span_mean(squares, span)
    return per_pair.mean()


def pair_accuracy(higher: torch.Tensor, lower: torch.Tensor) -> torch.Tensor:
    """Fraction of pairs with higher > lower (B,) → scalar."""
    return (higher > lower).float().mean()
