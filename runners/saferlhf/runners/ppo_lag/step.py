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
from saferlhf.runners.ppo_lag.rollout import Experience, critic_values
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
    S = exp.prompt_width
    out: dict[str, float] = {}
    with timer("actor"):
        log_probs = token_log_probs(nets.actor, exp.sequences, exp.attention_mask, S - 1)
        actor_update(nets, exp, adv, lam, cfg, log_probs, ptx_batch, out)
    with timer("critics"):
        values = critic_values(nets.reward_critic, exp.sequences, exp.attention_mask, S)
        critic_update(nets.reward_critic, "reward", values, exp.reward_values,
                      adv.reward_returns, exp, cfg, out)
        if nets.cost_critic is not None and adv.cost_returns is not None:
            values = critic_values(nets.cost_critic, exp.sequences, exp.attention_mask, S)
            critic_update(nets.cost_critic, "cost", values, exp.cost_values, adv.cost_returns,
                          exp, cfg, out)
    return out


def rl_step_reusing_rollout(
    nets, exp: Experience, lam: float, cfg: PPOLagConfig, *,
    ptx_batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None, timer,
) -> tuple[dict[str, float], Advantages]:
    """`rl_step` on experience whose actor/critic rollout forwards were deferred
    (`exp.deferred`): the first update after a rollout runs at the rollout's weights, so with no
    dropout its training forwards *are* those forwards. Their detached outputs become
    old log-probs and old values (filled into `exp` for later update iters), the advantages are
    computed from them, and the update proceeds as in `rl_step` — with ratio ρ = 1 and clipped
    values equal to the values, exactly as the separate forwards would give.

    Costs three forward passes less than collect + `rl_step`; holds the actor's and both critics'
    activations at once (their sum instead of the largest)."""
    assert exp.deferred, "rl_step_reusing_rollout needs experience without policy forwards"
    S = exp.prompt_width
    out: dict[str, float] = {}
    with timer("critics"):
        r_values = critic_values(nets.reward_critic, exp.sequences, exp.attention_mask, S)
        c_values = None
        if nets.cost_critic is not None:
            c_values = critic_values(nets.cost_critic, exp.sequences, exp.attention_mask, S)
    with timer("actor"):
        log_probs = token_log_probs(nets.actor, exp.sequences, exp.attention_mask, S - 1)
        exp.old_log_probs = log_probs.detach()
        exp.reward_values = r_values.detach()
        exp.cost_values = c_values.detach() if c_values is not None else None
        adv = compute_advantages(exp, cfg)
        actor_update(nets, exp, adv, lam, cfg, log_probs, ptx_batch, out)
    with timer("critics"):
        critic_update(nets.reward_critic, "reward", r_values, exp.reward_values,
                      adv.reward_returns, exp, cfg, out)
        if c_values is not None and adv.cost_returns is not None:
            critic_update(nets.cost_critic, "cost", c_values, exp.cost_values, adv.cost_returns,
                          exp, cfg, out)
    return out, adv


def actor_update(nets, exp: Experience, adv: Advantages, lam: float, cfg: PPOLagConfig,
                 log_probs: torch.Tensor,  # size = (B, T), with grad
                 ptx_batch, out: dict[str, float]) -> None:
    """Clipped surrogate on Â = (A_r − λ·A_c)/(1+λ) (PPO / shaping: Â = A_r), backward + step."""
    m = exp.action_mask
    if adv.cost_advantages is not None:
        advantages = lagrangian_advantage(adv.reward_advantages, adv.cost_advantages, lam)
    else:
        advantages = adv.reward_advantages
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


def critic_update(critic, name: str, values: torch.Tensor,  # size = (B, T), with grad
                  old_values: torch.Tensor, returns: torch.Tensor,  # size = (B, T) each
                  exp: Experience, cfg: PPOLagConfig, out: dict[str, float]) -> None:
    """Clipped value loss of one critic (`name`: reward | cost), backward + step."""
    loss = critic_loss(values, old_values, returns, exp.action_mask,
                       clip_range_value=cfg.clip_range_value)
    out[f"train/{name}_critic_lr"] = critic.lr
    critic.backward_step(loss)
    out[f"train/{name}_critic_loss"] = float(loss.detach())


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
