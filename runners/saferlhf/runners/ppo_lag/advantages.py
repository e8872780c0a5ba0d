"""Generalised advantage estimation (reference §5.4)."""

from __future__ import annotations

import torch


def gae(
    values: torch.Tensor,  # size = (B, T)
    rewards: torch.Tensor,  # size = (B, T)
    mask: torch.Tensor,  # size = (B, T)
    *,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:  # advantages, returns: each size = (B, T)
    """GAE over the response actions, backwards from the last column:

        V ← V·m,  r ← r·m
        δ_t = r_t + γ·V_{t+1} − V_t            (V beyond the last column = 0)
        A_t = δ_t + γ·λ_gae·A_{t+1}            (A beyond the last column = 0)
        G_t = A_t + V_t

    Both outputs are detached (the reference treats them as constants). Masked positions carry
    whatever the recursion gives; every loss multiplies by the mask.
    """
    values = values.detach() * mask
    rewards = rewards.detach() * mask
    T = rewards.shape[-1]
    advantages_reversed = []
    next_value = torch.zeros_like(values[:, 0])
    next_advantage = torch.zeros_like(values[:, 0])
    for t in reversed(range(T)):
        delta = rewards[:, t] + gamma * next_value - values[:, t]  # (B,)
        next_advantage = delta + gamma * gae_lambda * next_advantage
        next_value = values[:, t]
        advantages_reversed.append(next_advantage)
    advantages = torch.stack(advantages_reversed[::-1], dim=1)  # (B, T)
    returns = advantages + values
    return advantages.detach(), returns.detach()
