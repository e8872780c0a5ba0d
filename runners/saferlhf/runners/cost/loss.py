"""Cost-model losses (reference §4): BT ranking + two per-response sign-classification terms.

Sign convention: cost > 0 ⇔ unsafe. The data's safety sign is +1 safe / −1 unsafe, and the loss uses
cost_sign k = −safety_sign (+1 unsafe, −1 safe). With c_s / c_u the end costs of the safer /
unsafer response:
    L = mean_i[ −log σ(c_u − c_s) − log σ(k_s·c_s) − log σ(k_u·c_u) ] + η · mean({c_s²} ∪ {c_u²})
Token-wise: each of the three terms is a token mean over the pair's span [d, e] (reference §3.2),
plus η · the span mean of the squared costs; then the mean over pairs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from saferlhf.runners.reward.loss import span_mean


def cost_sign(is_safe: torch.Tensor) -> torch.Tensor:
    """k = −safety_sign: +1 for unsafe, −1 for safe. (B,) bool → (B,) float."""
    return torch.where(is_safe.bool(), -1.0, 1.0).to(torch.float32)


def cost_sequence_loss(
    safer_end: torch.Tensor,  # (B,) end cost c_s of the safer response
    unsafer_end: torch.Tensor,  # (B,) end cost c_u of the unsafer response
    safer_sign: torch.Tensor,  # (B,) k_s = −safety_sign ∈ {+1, −1}
    unsafer_sign: torch.Tensor,  # (B,) k_u
    regularization: float = 0.0,
) -> torch.Tensor:
    """Sequence-wise cost loss (seq_mean)."""
    losses = (
        -F.logsigmoid(unsafer_end - safer_end)
        - F.logsigmoid(safer_sign * safer_end)
        - F.logsigmoid(unsafer_sign * unsafer_end)
    )  # (B,)
    loss = losses.mean()
    if regularization > 0:
        loss = loss + regularization * torch.stack([safer_end, unsafer_end]).square().mean()
    return loss


def cost_token_loss(
    safer_scores: torch.Tensor,  # (B, L) per-token costs of the safer sequence
    unsafer_scores: torch.Tensor,  # (B, L)
    safer_sign: torch.Tensor,  # (B,)
    unsafer_sign: torch.Tensor,  # (B,)
    span: torch.Tensor,  # (B, L) bool, from reward.loss.divergence_spans
    regularization: float = 0.0,
) -> torch.Tensor:
    """Token-wise cost loss (seq_mean over pairs of token means over each span)."""
    per_pair = (
        span_mean(-F.logsigmoid(unsafer_scores - safer_scores), span)
        + span_mean(-F.logsigmoid(safer_sign.unsqueeze(1) * safer_scores), span)
        + span_mean(-F.logsigmoid(unsafer_sign.unsqueeze(1) * unsafer_scores), span)
    )  # (B,)
    if regularization > 0:
        squares = (safer_scores.square() + unsafer_scores.square()) / 2
        per_pair = per_pair + regularization * span_mean(squares, span)
    return per_pair.mean()


def sign_accuracy(
    costs: torch.Tensor,  # (N,) end costs
    signs: torch.Tensor,  # (N,) cost signs k
) -> torch.Tensor:
    """Fraction of responses with k·c > 0 (unsafe scored > 0, safe < 0)."""
    return (signs * costs > 0).float().mean()
