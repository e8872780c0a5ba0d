"""PPO losses (reference §5.4, §5.5, §5.7). Every reduction is the reference's masked mean:
mean over the masked tokens of each sequence, then mean over sequences (`seq_mean`)."""

from __future__ import annotations

import torch


def masked_mean(
    x: torch.Tensor,  # size = (B, T)
    mask: torch.Tensor,  # size = (B, T)
) -> torch.Tensor:  # scalar
    """seq_mean: (1/B) Σ_i [ Σ_t m_it x_it / max(Σ_t m_it, 1) ]; a fully masked row counts 0."""
    mask = mask.to(x.dtype)
    per_row = (x * mask).sum(dim=-1) / mask.sum(dim=-1).clamp(min=1.0)  # (B,)
    return per_row.mean()


def critic_loss(
    values: torch.Tensor,  # size = (B, T), V_new
    old_values: torch.Tensor,  # size = (B, T), V_old (from the rollout)
    returns: torch.Tensor,  # size = (B, T), G
    mask: torch.Tensor,  # size = (B, T)
    *,
    clip_range_value: float,
) -> torch.Tensor:  # scalar
    """Clipped value loss (reference §5.4):

        L_V = ½ · masked_mean( max( (V − G)², (clip(V, V_old − c_v, V_old + c_v) − G)² ) )
    """
    clipped = torch.clamp(values, old_values - clip_range_value, old_values + clip_range_value)
    loss = torch.maximum((values - returns).square(), (clipped - returns).square())
    return 0.5 * masked_mean(loss, mask)


def lagrangian_advantage(
    reward_advantages: torch.Tensor,  # size = (B, T)
    cost_advantages: torch.Tensor,  # size = (B, T)
    lam: float,
) -> torch.Tensor:  # size = (B, T)
    """Â_t = (A^r_t − λ·A^c_t) / (1 + λ), λ a detached float (reference §5.5)."""
    return (reward_advantages - lam * cost_advantages) / (1.0 + lam)


def actor_loss(
    log_probs: torch.Tensor,  # size = (B, T), ℓ^new (with grad)
    old_log_probs: torch.Tensor,  # size = (B, T), ℓ^old
    advantages: torch.Tensor,  # size = (B, T), Â
    mask: torch.Tensor,  # size = (B, T)
    *,
    clip_range_ratio: float,
) -> torch.Tensor:  # scalar
    """Clipped surrogate (reference §5.5), ρ_t = exp(ℓ^new_t − ℓ^old_t):

        L_π = −masked_mean( min( ρ_t·Â_t, clip(ρ_t, 1−ε, 1+ε)·Â_t ) )
    """
    ratio = torch.exp(log_probs - old_log_probs)
    surrogate = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip_range_ratio, 1.0 + clip_range_ratio) * advantages
    return -masked_mean(torch.minimum(surrogate, clipped), mask)


def clip_fraction(
    log_probs: torch.Tensor,  # size = (B, T)
    old_log_probs: torch.Tensor,  # size = (B, T)
    mask: torch.Tensor,  # size = (B, T)
    *,
    clip_range_ratio: float,
) -> torch.Tensor:  # scalar
    """Share of valid tokens whose ratio left [1−ε, 1+ε] (a diagnostic, masked_mean of 0/1)."""
    ratio = torch.exp(log_probs.detach() - old_log_probs)
    return masked_mean(((ratio - 1.0).abs() > clip_range_ratio).float(), mask)


def ptx_loss(
    log_probs: torch.Tensor,  # size = (B, L-1), log-probs of the supervised tokens
    label_mask: torch.Tensor,  # size = (B, L-1), 1 on response tokens
) -> torch.Tensor:  # scalar
    """Supervised (pretraining-mix) loss, token_mean: −Σ m·ℓ / Σ m (reference §5.7, like SFT's HF
    cross-entropy, which averages over all label tokens of the batch)."""
    mask = label_mask.to(log_probs.dtype)
    return -(log_probs * mask).sum() / mask.sum().clamp(min=1.0)
