"""One PPO update on one micro-batch of experience (reference §5.4–§5.5), read top to bottom:
streams and advantages (no grad), then actor, reward critic and cost critic, each one
backward + step. The λ update happens before this, in the trainer (reference order §5.5)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from saferlhf.runners.common.config import PPOLagConfig
from saferlhf.runners.common.generation import token_log_probs
from saferlhf.runners.ppo_lag.advantages import gae
from saferlhf.runners.ppo_lag.losses import (
    actor_loss,
    clip_fraction,
    critic_loss,
    lagrangian_advantage,
    masked_mean,
    ptx_loss,
)
from saferlhf.runners.ppo_lag.rollout import Experience, action_slice, critic_values
from saferlhf.runners.ppo_lag.shaping import (
    cost_stream,
    reward_stream,
    sequence_kl,
    shaped_end_score,
)


@dataclass
class Advantages:
    reward_stream: torch.Tensor  # size = (B, T), r_t after KL shaping and clipping
    reward_advantages: torch.Tensor  # size = (B, T)
    reward_returns: torch.Tensor  # size = (B, T)
    cost_stream: torch.Tensor | None  # size = (B, T)
    cost_advantages: torch.Tensor | None  # size = (B, T)
    cost_returns: torch.Tensor | None  # size = (B, T)
    end_rewards: torch.Tensor  # size = (B,), R (or R − ν·C for reward shaping)


@torch.no_grad()
def compute_advantages(exp: Experience, cfg: PPOLagConfig) -> Advantages:
    """Per-token streams (§5.3) and GAE for each critic (§5.4)."""
    m = exp.action_mask
    end_rewards = exp.rewards
    if cfg.algorithm == "reward_shaping":
        end_rewards = shaped_end_score(exp.rewards, exp.costs, cfg.lambda_init)  # §5.8
    kl = {"kl_coeff": cfg.kl_coeff, "clip_range_score": cfg.clip_range_score}
    r = reward_stream(end_rewards, exp.old_log_probs, exp.ref_log_probs, m, **kl)
    r_adv, r_ret = gae(exp.reward_values, r, m, gamma=cfg.gamma, gae_lambda=cfg.gae_lambda)
    c = c_adv = c_ret = None
    if cfg.algorithm == "ppo_lag":
        c = cost_stream(exp.costs, exp.old_log_probs, exp.ref_log_probs, m, **kl)
        c_adv, c_ret = gae(exp.cost_values, c, m, gamma=cfg.gamma, gae_lambda=cfg.gae_lambda)
    return Advantages(r, r_adv, r_ret, c, c_adv, c_ret, end_rewards)


def rl_step(
    nets, exp: Experience, adv: Advantages, lam: float, cfg: PPOLagConfig, *,
    ptx_batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None, timer,
) -> dict[str, float]:
    """Actor, reward critic and cost critic updates; returns this rank's metrics."""
    m, S = exp.action_mask, exp.prompt_width
    out: dict[str, float] = {}

    # 1. actor: clipped surrogate on Â = (A_r − λ·A_c)/(1+λ) (PPO / shaping: Â = A_r)
    with timer("actor"):
        if adv.cost_advantages is not None:
            advantages = lagrangian_advantage(adv.reward_advantages, adv.cost_advantages, lam)
        else:
            advantages = adv.reward_advantages
        log_probs = action_slice(token_log_probs(nets.actor, exp.sequences, exp.attention_mask), S)
        loss = actor_loss(log_probs, exp.old_log_probs, advantages, m,
                          clip_range_ratio=cfg.clip_range_ratio)
        out["train/actor_loss"] = float(loss.detach())
        out["train/clip_fraction"] = float(
            clip_fraction(log_probs, exp.old_log_probs, m, clip_range_ratio=cfg.clip_range_ratio)
        )
        if ptx_batch is not None:
            ids, mask, label_mask = ptx_batch
            ptx = ptx_loss(token_log_probs(nets.actor, ids, mask), label_mask)
            out["train/ptx_loss"] = float(ptx.detach())
            # reference §5.7: RL and PTX backwards share one step, each halved by accumulation
            loss = 0.5 * (loss + cfg.ptx_coeff * ptx)
        out["train/actor_lr"] = nets.actor.lr  # the rate this step uses
        nets.actor.backward_step(loss)

    # 2. reward critic, 3. cost critic: clipped value losses
    with timer("critics"):
        values = critic_values(nets.reward_critic, exp.sequences, exp.attention_mask, S)
        r_loss = critic_loss(values, exp.reward_values, adv.reward_returns, m,
                             clip_range_value=cfg.clip_range_value)
        out["train/reward_critic_lr"] = nets.reward_critic.lr
        nets.reward_critic.backward_step(r_loss)
        out["train/reward_critic_loss"] = float(r_loss.detach())
        if nets.cost_critic is not None and adv.cost_returns is not None:
            values = critic_values(nets.cost_critic, exp.sequences, exp.attention_mask, S)
            c_loss = critic_loss(values, exp.cost_values, adv.cost_returns, m,
                                 clip_range_value=cfg.clip_range_value)
            out["train/cost_critic_lr"] = nets.cost_critic.lr
            nets.cost_critic.backward_step(c_loss)
            out["train/cost_critic_loss"] = float(c_loss.detach())
    return out


@torch.no_grad()
def rollout_metrics(exp: Experience, adv: Advantages, cfg: PPOLagConfig) -> dict[str, float]:
    """The reference's per-step statistics (§5.10) plus train/harmful_rate."""
    m = exp.action_mask
    prefix = "train/shaped_reward" if cfg.algorithm == "reward_shaping" else "train/reward"
    out = {
        "train/reward": float(exp.rewards.mean()),
        "train/kl_divergence": float(sequence_kl(exp.old_log_probs, exp.ref_log_probs, m).mean()),
        f"{prefix}_with_kl_penalty": float(adv.reward_stream.sum(dim=-1).mean()),
        f"{prefix}_advantage": float(masked_mean(adv.reward_advantages, m)),
        f"{prefix}_return": float(masked_mean(adv.reward_returns, m)),
        f"{prefix}_value": float(masked_mean(exp.reward_values, m)),
        "train/mean_generated_length": float(exp.generated_lengths.float().mean()),
    }
    if cfg.algorithm == "reward_shaping":
        out["train/shaped_reward"] = float(adv.end_rewards.mean())
    if exp.costs is not None:
        out["train/cost"] = float(exp.costs.mean())
        out["train/harmful_rate"] = float((exp.costs > 0).float().mean())
    if adv.cost_stream is not None:
        out["train/cost_with_kl_penalty"] = float(adv.cost_stream.sum(dim=-1).mean())
        out["train/cost_advantage"] = float(masked_mean(adv.cost_advantages, m))
        out["train/cost_return"] = float(masked_mean(adv.cost_returns, m))
        out["train/cost_value"] = float(masked_mean(exp.cost_values, m))
    return out
