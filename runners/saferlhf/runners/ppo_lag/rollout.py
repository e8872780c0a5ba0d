"""One micro-batch of experience (reference §5.2): sample, score, and record everything the
update needs — old and reference log-probs, both critics' values — computed once, without grad.

Arrays over actions have width T = L − S: action t = S−1 … L−2 emits token t+1 (reference §5.3).

With `policy_forwards=False` the actor's old log-probs and both critics' values are left out
(None): the first update after the rollout runs the actor and critics at exactly these weights, so
its training forwards give the same numbers (`step.rl_step_reusing_rollout`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from saferlhf.runners.common.generation import Rollout, token_log_probs


@dataclass
class Experience:
    prompts: list[str]  # B templated prompts (row i·n + j = sample j of prompt i)
    is_harmful: list[bool | None]  # B prompt labels, None when the data does not mark them
    responses: list[str]  # B decoded responses
    sequences: torch.Tensor  # size = (B, L)
    attention_mask: torch.Tensor  # size = (B, L)
    prompt_width: int  # S
    action_mask: torch.Tensor  # size = (B, T), m_t = attn[t+1]
    old_log_probs: torch.Tensor | None  # size = (B, T); None until the first update (reuse)
    ref_log_probs: torch.Tensor  # size = (B, T)
    rewards: torch.Tensor  # size = (B,), R
    costs: torch.Tensor | None  # size = (B,), C
    reward_values: torch.Tensor | None  # size = (B, T); None until the first update (reuse)
    cost_values: torch.Tensor | None  # size = (B, T)

    @property
    def deferred(self) -> bool:
        """The actor/critic rollout forwards were left to the first update (reuse)."""
        return self.old_log_probs is None

    @property
    def generated_lengths(self) -> torch.Tensor:  # size = (B,)
        return self.action_mask.sum(dim=-1)


def action_slice(per_position: torch.Tensor, prompt_width: int) -> torch.Tensor:
    """(B, L−1) per-action values → the response actions (B, L−S), t = S−1 … L−2."""
    return per_position[:, prompt_width - 1 :]


def critic_values(critic, sequences, attention_mask, prompt_width: int) -> torch.Tensor:
    """V_t for the response actions: the critic's scores at every position but the last (§5.2)."""
    scores = critic(sequences, attention_mask).scores  # (B, L)
    return action_slice(scores[:, :-1], prompt_width)  # (B, T)


@torch.no_grad()
def collect_experience(
    *,
    actor,  # TrainedModel
    reference,
    reward_critic,  # TrainedModel
    cost_critic,  # TrainedModel | None
    scorer,
    tokenizer,
    prompts: list[str],
    is_harmful: list[bool | None],
    rollout_params,
    engine,  # RolloutEngine: samples (hf: the actor itself; vllm: synced after each update)
    max_prompt_tokens: int | None = None,
    timer=None,
    policy_forwards: bool = True,
) -> Experience:
    """Roll out `prompts` (templated) and compute every no-grad quantity of the update (without
    the actor's and critics' when `policy_forwards` is False: see the module doc)."""
    timer = timer or _NullTimer()
    n = rollout_params.num_return_sequences
    with timer("generate"):
        rollout: Rollout = engine.generate(
            prompts, max_new_tokens=rollout_params.max_new_tokens,
            temperature=rollout_params.temperature, top_p=rollout_params.top_p,
            repetition_penalty=rollout_params.repetition_penalty, num_return_sequences=n,
            max_prompt_tokens=max_prompt_tokens,
        )
    seqs, mask, S = rollout.sequences, rollout.attention_mask, rollout.prompt_width
    rows_prompts = [p for p in prompts for _ in range(n)]
    rows_harmful = [h for h in is_harmful for _ in range(n)]
    with timer("score"):
        scores = scorer(rows_prompts, rollout.response_texts, seqs, mask)
    rewards = scores.rewards
    old_lp = r_values = c_values = None
    with timer("reference_log_probs"):
        if policy_forwards:
            actor.train(False)
            old_lp = token_log_probs(actor, seqs, mask, S - 1)  # (B, T)
            actor.train(True)
        ref_lp = token_log_probs(reference, seqs, mask, S - 1)
    if policy_forwards:
        r_values, c_values = rollout_values(reward_critic, cost_critic, seqs, mask, S, timer)
    return Experience(
        prompts=rows_prompts, is_harmful=rows_harmful, responses=rollout.response_texts,
        sequences=seqs, attention_mask=mask, prompt_width=S, action_mask=mask[:, S:].float(),
        old_log_probs=old_lp, ref_log_probs=ref_lp, rewards=rewards, costs=scores.costs,
        reward_values=r_values, cost_values=c_values,
    )


@torch.no_grad()
def rollout_values(reward_critic, cost_critic, seqs, mask, S: int, timer):
    """Both critics' V_t at the rollout (eval mode, no grad): (B, T) each, cost None without."""
    with timer("values"):
        reward_critic.train(False)
        r_values = critic_values(reward_critic, seqs, mask, S)
        reward_critic.train(True)
        c_values = None
        if cost_critic is not None:
            cost_critic.train(False)
            c_values = critic_values(cost_critic, seqs, mask, S)
            cost_critic.train(True)
    return r_values, c_values


class _NullTimer:
    def __call__(self, name: str):
        import contextlib

        return contextlib.nullcontext()
