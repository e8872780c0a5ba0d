"""The reference implementation's PPO-Lagrangian iteration, modelled for bench/vs_reference.py.

A description-level re-implementation written from shared/reference/safe_rlhf_algorithm.md
(§5.2–§5.6, §6.4, §7, §10): it contains none of the reference's code. It keeps the *structure*
of the reference's iteration, because that structure is what the benchmark compares against:

- rollout: Hugging Face `generate(do_sample=True, synced_gpus=True)` on the actor (a one-process
  gloo group, so the synced-GPU bookkeeping runs as it does there), then **six separate forward
  passes** without grad: actor and reference log-probs over every position of the full vocabulary,
  the reward and cost models' end scores, and both critics' values;
- rl_step: the λ update (SGD on log λ, clamp above, "all-reduce" and broadcast), the per-token KL
  shaping of both streams with a per-row end-index loop, GAE as a **Python loop over time steps**
  for each stream, then actor, reward critic and cost critic: forward with grad, backward, gradient
  clip 1.0, **unfused per-tensor AdamW** (`foreach=False`: what the reference's CPU fallback for
  FusedAdam, torch.optim.AdamW, does on CPU tensors), and the LR schedulers; **no reuse** of any
  rollout output; every metric reduced across ranks one by one.

Modelled conservatively: the DeepSpeed ZeRO-0 engines of the reference are plain modules here
(the same arithmetic without the engine's bookkeeping), so the reference side is, if anything,
faster than the real one and the benchmark's ratio a lower bound. Models, prompts, sampled-token
counts and hyperparameters come from the same folders and the same `PPOLagConfig` as our side.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import torch
import torch.distributed as dist


def gather_log_probs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[labels]: logits (B, L−1, V), labels (B, L−1) → (B, L−1)."""
    log_probs = torch.log_softmax(logits, dim=-1)
    return log_probs.gather(dim=-1, index=labels.unsqueeze(-1)).squeeze(-1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over each row's masked entries, then over rows (reference notation §0)."""
    return ((x * mask).sum(dim=-1) / mask.sum(dim=-1).clamp(min=1)).mean()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """One collective per value, as the reference's metric reduction does (SUM then divide)."""
    if dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= dist.get_world_size()
    return value


@dataclass
class Trained:
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    grad_clip: float

    def step(self, loss: torch.Tensor) -> None:
        """An engine's backward + step: backward, clip, AdamW, schedule."""
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad()


def _trained(model, spec, total_steps: int) -> Trained:
    from transformers import get_scheduler

    decay, no_decay = [], []
    for name, param in model.named_parameters():
        lowered = name.lower()
        (no_decay if "bias" in lowered or "layernorm.weight" in lowered else decay).append(param)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": spec.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=spec.lr, betas=tuple(spec.betas), foreach=False,
    )
    name = "constant_with_warmup" if spec.lr_scheduler == "constant" else spec.lr_scheduler
    scheduler = get_scheduler(name, optimizer, num_warmup_steps=int(spec.warmup_ratio
                                                                     * total_steps),
                              num_training_steps=total_steps)
    model.train()
    return Trained(model, optimizer, scheduler, spec.grad_clip)


class ReferenceIteration:
    """The reference's six networks and one rollout + rl_step iteration (see the module doc)."""

    def __init__(self, cfg, total_steps: int, timer) -> None:
        from saferlhf.runners.common.score_model import ScoreModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.cfg, self.timer = cfg, timer
        self.tokenizer = AutoTokenizer.from_pretrained(cfg.actor_path)
        actor = AutoModelForCausalLM.from_pretrained(cfg.actor_path, dtype=torch.float32)
        self.reference = AutoModelForCausalLM.from_pretrained(cfg.reference_path,
                                                              dtype=torch.float32).eval()
        self.reward_model = ScoreModel.from_pretrained(cfg.reward_model_path).eval()
        self.cost_model = ScoreModel.from_pretrained(cfg.cost_model_path).eval()
        reward_critic = ScoreModel.from_pretrained(cfg.reward_model_path, score_type="critic")
        cost_critic = ScoreModel.from_pretrained(cfg.cost_model_path, score_type="critic")
        for frozen in (self.reference, self.reward_model, self.cost_model):
            frozen.requires_grad_(False)
        self.actor = _trained(actor, cfg.actor_optim, total_steps)
        self.reward_critic = _trained(reward_critic, cfg.critic_optim, total_steps)
        self.cost_critic = _trained(cost_critic, cfg.critic_optim, total_steps)
        self.log_lambda = torch.nn.Parameter(torch.tensor(math.log(cfg.lambda_init)))
        self.lambda_optimizer = torch.optim.SGD([self.log_lambda], lr=cfg.lambda_lr)
        self.episode_costs: deque[float] = deque(maxlen=cfg.episode_cost_window_size)
        self.threshold = cfg.threshold if cfg.threshold is not None else 0.0
        self.sampled_tokens = 0

    # -- rollout (§5.2) --------------------------------------------------------------------------
    @torch.no_grad()
    def rollout(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        tok, rp = self.tokenizer, self.cfg.rollout
        tok.padding_side = "left"
        enc = tok(prompts, return_tensors="pt", padding=True, truncation=True,
                  max_length=self.cfg.max_length_tokens)
        prompt = enc["input_ids"]
        self.actor.model.eval()
        with self.timer("generate"):
            sequence = self.actor.model.generate(
                input_ids=prompt, attention_mask=enc["attention_mask"],
                max_length=prompt.size(-1) + rp.max_new_tokens, do_sample=True,
                temperature=rp.temperature, top_p=rp.top_p, top_k=0,
                repetition_penalty=rp.repetition_penalty,
                num_return_sequences=rp.num_return_sequences, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, synced_gpus=True,
            )
        self.sampled_tokens += sequence.numel() - prompt.numel()
        mask = sequence.ne(tok.pad_token_id)
        if tok.unk_token_id is not None:
            mask &= sequence.ne(tok.unk_token_id)
        with self.timer("reference_log_probs"):
            logits = self.actor.model(sequence, attention_mask=mask).logits
            ref_logits = self.reference(sequence, attention_mask=mask).logits
            old_log_probs = gather_log_probs(logits[:, :-1], sequence[:, 1:])
            ref_log_probs = gather_log_probs(ref_logits[:, :-1], sequence[:, 1:])
        with self.timer("score"):
            reward = self.reward_model(sequence, mask).end_scores
            cost = self.cost_model(sequence, mask).end_scores
        with self.timer("values"):
            self.reward_critic.model.eval()
            self.cost_critic.model.eval()
            reward_values = self.reward_critic.model(sequence, mask).scores[:, :-1]
            cost_values = self.cost_critic.model(sequence, mask).scores[:, :-1]
            self.reward_critic.model.train()
            self.cost_critic.model.train()
        self.actor.model.train()
        self.episode_costs.extend(cost.tolist())
        return {"prompt": prompt, "input_ids": sequence, "attention_mask": mask,
                "old_log_probs": old_log_probs, "ref_log_probs": ref_log_probs,
                "reward": reward, "cost": cost, "reward_values": reward_values,
                "cost_values": cost_values}

    # -- rl_step (§5.3–§5.6) ---------------------------------------------------------------------
    def lambda_update(self) -> None:
        episode_cost = all_reduce_mean(torch.tensor(
            sum(self.episode_costs) / max(len(self.episode_costs), 1)))
        loss = -(episode_cost - self.threshold) * self.log_lambda.exp()
        self.lambda_optimizer.zero_grad()
        loss.backward()
        self.lambda_optimizer.step()
        if self.cfg.lambda_max is not None:
            with torch.no_grad():
                self.log_lambda.clamp_(max=math.log(self.cfg.lambda_max))
        if dist.is_initialized():
            dist.broadcast(self.log_lambda.data, src=0)

    def kl_regularised(self, reward, cost, old_log_probs, ref_log_probs, mask):
        """r_t = −β·kl_t (+R at the end), c_t = +β·kl_t (+C at the end), both clipped."""
        end_index = torch.cat([m.nonzero()[-1] for m in mask])  # (B,), one row at a time
        kl = old_log_probs - ref_log_probs
        beta, clip = self.cfg.kl_coeff, self.cfg.clip_range_score
        rewards = (-beta * kl).scatter_add(-1, end_index.unsqueeze(-1), reward.unsqueeze(-1))
        costs = (beta * kl).scatter_add(-1, end_index.unsqueeze(-1), cost.unsqueeze(-1))
        return rewards.clamp(-clip, clip), costs.clamp(-clip, clip)

    def advantages_and_returns(self, values, rewards, mask, start: int):
        """GAE backwards over t = L−2 … start, one time step per Python iteration (§5.4)."""
        gamma, lam = self.cfg.gamma, self.cfg.gae_lambda
        values, rewards = values * mask, rewards * mask
        length = rewards.size(-1)
        last, reversed_advantages = 0.0, []
        for t in reversed(range(start, length)):
            next_values = values[:, t + 1] if t < length - 1 else 0.0
            delta = rewards[:, t] + gamma * next_values - values[:, t]
            last = delta + gamma * lam * last
            reversed_advantages.append(last)
        advantages = torch.stack(reversed_advantages[::-1], dim=1)
        return advantages.detach(), (advantages + values[:, start:]).detach()

    def critic_loss(self, values, old_values, returns, mask):
        clip = self.cfg.clip_range_value
        clipped = torch.clamp(values, old_values - clip, old_values + clip)
        loss = torch.maximum(torch.square(values - returns), torch.square(clipped - returns))
        return 0.5 * masked_mean(loss, mask)

    def rl_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        cfg = self.cfg
        self.lambda_update()
        lam = float(self.log_lambda.exp())
        ids, attn = batch["input_ids"], batch["attention_mask"]
        start = batch["prompt"].size(-1) - 1
        mask = attn[:, 1:].float()
        with torch.no_grad():
            old_rewards, old_costs = self.kl_regularised(
                batch["reward"], batch["cost"], batch["old_log_probs"], batch["ref_log_probs"],
                mask)
            r_adv, r_ret = self.advantages_and_returns(batch["reward_values"], old_rewards, mask,
                                                       start)
            c_adv, c_ret = self.advantages_and_returns(batch["cost_values"], old_costs, mask,
                                                       start)
        m = mask[:, start:]
        with self.timer("actor"):
            logits = self.actor.model(ids, attention_mask=attn, use_cache=False).logits
            log_probs = gather_log_probs(logits[:, :-1], ids[:, 1:])
            advantages = (r_adv - lam * c_adv) / (1.0 + lam)
            ratio = torch.exp(log_probs[:, start:] - batch["old_log_probs"][:, start:])
            eps = cfg.clip_range_ratio
            surrogate = torch.minimum(ratio * advantages,
                                      torch.clamp(ratio, 1.0 - eps, 1.0 + eps) * advantages)
            actor_loss = -masked_mean(surrogate, m)
            self.actor.step(actor_loss)
        with self.timer("critics"):
            values = self.reward_critic.model(ids, attn).scores[:, :-1]
            reward_critic_loss = self.critic_loss(values[:, start:],
                                                  batch["reward_values"][:, start:], r_ret, m)
            self.reward_critic.step(reward_critic_loss)
            values = self.cost_critic.model(ids, attn).scores[:, :-1]
            cost_critic_loss = self.critic_loss(values[:, start:],
                                                batch["cost_values"][:, start:], c_ret, m)
            self.cost_critic.step(cost_critic_loss)
        with torch.no_grad():
            kl = ((batch["old_log_probs"] - batch["ref_log_probs"])[:, start:] * m).sum(-1).mean()
            figures = {
                "train/actor_loss": actor_loss, "train/reward_critic_loss": reward_critic_loss,
                "train/cost_critic_loss": cost_critic_loss, "train/reward": batch["reward"].mean(),
                "train/cost": batch["cost"].mean(), "train/kl_divergence": kl,
                "train/reward_advantage": masked_mean(r_adv, m),
                "train/cost_advantage": masked_mean(c_adv, m),
                "train/reward_return": masked_mean(r_ret, m),
                "train/cost_return": masked_mean(c_ret, m),
                "train/mean_generated_length": m.sum(-1).mean(),
            }
            return {k: float(all_reduce_mean(v.detach())) for k, v in figures.items()}

    def iteration(self, prompts: list[str]) -> dict[str, float]:
        """All micro-batches of the prompt batch rolled out before any update (§5.2)."""
        size = self.cfg.batch_size // self.cfg.rollout.num_return_sequences
        batches = [self.rollout(prompts[i : i + size]) for i in range(0, len(prompts), size)]
        metrics: dict[str, float] = {}
        for _ in range(self.cfg.update_iters):
            for batch in batches:
                metrics = self.rl_step(batch)
        return metrics
