"""The calibration pass of a safety budget (issue 6): sample from the starting policy, score with
the cost model (or the oracle), and derive the threshold with `calibration.derive_threshold`.

Each rank samples its share of the calibration prompts; the costs are gathered so every rank
derives the same d. Prompts the data does not mark are flagged harmful when any of their two
samples scores cost > 0.
"""

from __future__ import annotations

import torch
from saferlhf.runners.common.dist import all_gather_cat, get_world_size
from saferlhf.runners.common.errors import InvalidInputError
from saferlhf.runners.common.generation import generate
from saferlhf.runners.ppo_lag.calibration import (
    Calibration,
    CalibrationError,
    derive_threshold,
    flag_prompts_by_cost,
)
from saferlhf.runners.ppo_lag.setup import calibration_sources, load_prompt_rows


def calibrate(trainer) -> tuple[Calibration, dict[str, bool]]:
    cfg, nets = trainer.cfg, trainer.nets
    budget = cfg.safety_budget
    assert budget is not None
    rows = load_prompt_rows(calibration_sources(cfg), nets.tokenizer.eos_token, cfg.seed)
    unmarked = any(r.is_harmful is None for r in rows)
    per_prompt = 2 if unmarked else 1
    rows = rows[: max(1, budget.calibration_samples // per_prompt)]
    mine = rows[trainer.dist.rank :: get_world_size()]
    prompt_index, costs, rewards = [], [], []
    chunk = max(1, cfg.batch_size // per_prompt)
    for start in range(0, len(mine), chunk):
        part = mine[start : start + chunk]
        texts = [r.text for r in part]
        with nets.actor.sampling_precision():
            rollout = generate(
                nets.actor.bare, nets.tokenizer, texts, max_new_tokens=cfg.rollout.max_new_tokens,
                temperature=cfg.rollout.temperature, top_p=cfg.rollout.top_p,
                repetition_penalty=cfg.rollout.repetition_penalty,
                num_return_sequences=per_prompt, synced_gpus=trainer.synced_gpus,
                max_prompt_tokens=trainer.max_prompt_tokens, decode=cfg.rollout.decode,
                compile=cfg.rollout.compile,
            )
        rows_texts = [t for t in texts for _ in range(per_prompt)]
        scores = nets.scorer(rows_texts, rollout.response_texts, rollout.sequences,
                             rollout.attention_mask)
        if scores.costs is None:
            raise InvalidInputError("a safety budget needs a cost model (cost_model_path) or "
                                    "reward_source: oracle", field="safety_budget")
        first = trainer.dist.rank + start * get_world_size()
        prompt_index += [first + k * get_world_size() for k in range(len(part))
                         for _ in range(per_prompt)]
        costs.append(scores.costs.float().cpu())
        rewards.append(scores.rewards.float().cpu())
    local_costs = torch.cat(costs) if costs else torch.zeros(0)
    local_rewards = torch.cat(rewards) if rewards else torch.zeros(0)
    all_costs = all_gather_cat(local_costs).tolist()
    all_rewards = all_gather_cat(local_rewards).tolist()
    all_index = [int(i) for i in all_gather_cat(torch.tensor(prompt_index, dtype=torch.long))]
    if unmarked:
        flags = flag_prompts_by_cost([rows[i].text for i in all_index], all_costs)
        harmful = [rows[i].is_harmful if rows[i].is_harmful is not None else flags[rows[i].text]
                   for i in all_index]
        labels = "cost_model"
    else:
        flags = {}
        harmful = [bool(rows[i].is_harmful) for i in all_index]
        labels = "data"
    try:
        cal = derive_threshold(all_costs, harmful, target=budget.max_harmful_rate,
                               scope=budget.scope, rewards=all_rewards, prompt_labels=labels)
    except CalibrationError as err:
        raise InvalidInputError(str(err), field="safety_budget") from err
    return cal, flags
