"""Per-token rewards with the KL penalty (reference §5.3).

Index t is an action: it emits token x_{t+1}; ℓ_t = log π(x_{t+1} | x_{≤t}). Arrays here cover
the response actions only, t = S−1 … L−2, so they have width T = L − S; the mask is m_t = attn[t+1].
"""

from __future__ import annotations

import torch


def last_action_index(mask: torch.Tensor) -> torch.Tensor:  # size = (B,)
    """Index of the last action with m_t = 1 per row (the one that emitted EOS or the final token).

    mask: (B, T). A fully masked row gets index 0 (callers mask it out; see `kl_shaped_stream`).
    """
    T = mask.shape[-1]
    positions = torch.arange(T, device=mask.device).expand_as(mask)
    return torch.where(mask.bool(), positions, torch.zeros_like(positions)).max(dim=-1).values


def kl_shaped_stream(
    end_scores: torch.Tensor,  # size = (B,)
    old_log_probs: torch.Tensor,  # size = (B, T)
    ref_log_probs: torch.Tensor,  # size = (B, T)
    mask: torch.Tensor,  # size = (B, T)
    *,
    kl_coeff: float,
    kl_sign: float,
    clip_range_score: float,
) -> torch.Tensor:  # size = (B, T)
    """One stream of per-token rewards:

        r_t = clip( kl_sign · β · (ℓ_t^old − ℓ_t^ref) + 1[t = T_end] · score,  −c_s, c_s ) · m_t

    Reward stream: kl_sign = −1 (KL is a penalty); cost stream: kl_sign = +1 (KL counts as cost),
    reference §5.3 after PKU-Alignment/safe-rlhf#173. T_end = the last action with m_t = 1; a row
    with no valid action receives nothing (its score is dropped, every entry 0).
    """
    kl = old_log_probs - ref_log_probs  # (B, T) k1 estimator on the sampled tokens
    stream = kl_sign * kl_coeff * kl
    end = last_action_index(mask)  # (B,)
    has_action = mask.bool().any(dim=-1)  # (B,)
    bonus = torch.zeros_like(stream)
    bonus.scatter_(1, end.unsqueeze(1), torch.where(has_action, end_scores, 0.0).unsqueeze(1))
    stream = (stream + bonus).clamp(-clip_range_score, clip_range_score)
    return stream * mask


def reward_stream(end_rewards, old_log_probs, ref_log_probs, mask, *, kl_coeff, clip_range_score):
    """Reward stream r_t = −β·k1_t + 1[t=T]·R, clipped (reference §5.3). Shapes as above."""
    return kl_shaped_stream(
        end_rewards, old_log_probs, ref_log_probs, mask,
        kl_coeff=kl_coeff, kl_sign=-1.0, clip_range_score=clip_range_score,
    )


def cost_stream(end_costs, old_log_probs, ref_log_probs, mask, *, kl_coeff, clip_range_score):
    """Cost stream c_t = +β·k1_t + 1[t=T]·C, clipped (reference §5.3). Shapes as above."""
    return kl_shaped_stream(
        end_costs, old_log_probs, ref_log_probs, mask,
        kl_coeff=kl_coeff, kl_sign=+1.0, clip_range_score=clip_range_score,
    )


def shaped_end_score(
    rewards: torch.Tensor,  # size = (B,)
    costs: torch.Tensor,  # size = (B,)
    nu: float,
) -> torch.Tensor:  # size = (B,)
    """Reward-shaping baseline (reference §5.8): R − ν·C with a fixed ν (= lambda_init)."""
    return rewards - nu * costs


def sequence_kl(
    old_log_probs: torch.Tensor,  # size = (B, T)
    ref_log_probs: torch.Tensor,  # size = (B, T)
    mask: torch.Tensor,  # size = (B, T)
) -> torch.Tensor:  # size = (B,)
    """Σ_t m_t (ℓ_t^old − ℓ_t^ref): the per-sequence KL logged as train/kl_divergence (§5.10)."""
    return ((old_log_probs - ref_log_probs) * mask).sum(dim=-1)
