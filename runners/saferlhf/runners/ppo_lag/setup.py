"""Build everything a PPO-Lagrangian stage needs from its config: models, scorer, prompt order.

Side-effect free apart from loading files; every missing input is an InvalidInputError naming the
config field, so the runner exits 2 with a message instead of a traceback.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from saferlhf.runners.common.config import DataSource, PPOLagConfig
from saferlhf.runners.common.errors import InvalidInputError


@dataclass(frozen=True)
class PromptRow:
    text: str  # templated prompt
    is_harmful: bool | None


def require_path(path: str | None, field: str, why: str) -> str:
    if not path:
        raise InvalidInputError(f"missing: {why}", field=field)
    if not Path(path).exists():
        raise InvalidInputError(f"{path} does not exist ({why})", field=field)
    return path


def load_prompt_rows(sources: list[DataSource], eos_token: str, seed: int) -> list[PromptRow]:
    """Prompt-only records of every source, templated (reference §1.2)."""
    from saferlhf.runners.common.data import load_records
    from saferlhf.runners.common.template import format_prompt

    rows: list[PromptRow] = []
    for source in sources:
        for rec in load_records(source, "prompt_only", seed=seed):
            rows.append(PromptRow(format_prompt(rec.prompt, eos_token), rec.is_harmful))
    if not rows:
        raise InvalidInputError("the prompt sources yielded no prompts", field="prompts")
    return rows


def calibration_sources(cfg: PPOLagConfig) -> list[DataSource]:
    """The synthetic `calibration` split when the prompts are synthetic, else the prompts."""
    assert cfg.safety_budget is not None
    if any(s.format == "synthetic" for s in cfg.prompts):
        return [DataSource(format="synthetic", split="calibration",
                           size=cfg.safety_budget.calibration_samples)]
    return list(cfg.prompts)


@dataclass(frozen=True)
class Schedule:
    """Step accounting (reference §5.9): an iteration = one prompt batch rolled out and trained."""

    prompts_per_chunk: int  # prompts generated together = one micro-batch of sequences
    chunks_per_iteration: int  # micro-batches per iteration
    iterations_per_epoch: int
    total_iterations: int

    @property
    def steps_per_iteration(self) -> int:
        return self.chunks_per_iteration  # × update_iters, see total_steps

    def total_steps(self, update_iters: int) -> int:
        return self.total_iterations * self.chunks_per_iteration * update_iters


def make_schedule(cfg: PPOLagConfig, n_prompts: int, world_size: int) -> Schedule:
    n = cfg.rollout.num_return_sequences
    if cfg.batch_size % n:
        raise InvalidInputError(
            f"batch_size ({cfg.batch_size}) must be a multiple of rollout.num_return_sequences "
            f"({n}): a micro-batch holds every sample of its prompts", field="batch_size",
        )
    chunk = cfg.batch_size // n
    pbs = cfg.rollout.prompt_batch_size
    if pbs % chunk:
        raise InvalidInputError(
            f"rollout.prompt_batch_size ({pbs}) × num_return_sequences ({n}) must be a multiple "
            f"of batch_size ({cfg.batch_size}) (reference §5.2)", field="rollout.prompt_batch_size",
        )
    per_rank = n_prompts // world_size
    per_epoch = per_rank // pbs
    if per_epoch == 0:
        raise InvalidInputError(
            f"{n_prompts} prompts are fewer than prompt_batch_size ({pbs}) × processes "
            f"({world_size}); add prompts or lower rollout.prompt_batch_size", field="prompts",
        )
    total = cfg.iterations or cfg.epochs * per_epoch
    steps_per_iter = (pbs // chunk) * cfg.update_iters
    if cfg.max_steps:
        total = min(total, -(-cfg.max_steps // steps_per_iter))
    return Schedule(chunk, pbs // chunk, per_epoch, total)


def iteration_prompts(
    rows: list[PromptRow], iteration: int, schedule: Schedule, *, seed: int, rank: int,
    world_size: int, prompt_batch_size: int,
) -> list[PromptRow]:
    """This rank's prompt batch for `iteration`: a seeded shuffle per epoch, rank-strided.

    A pure function of (iteration, seed, rank), so the data position is just the iteration.
    """
    epoch, index = divmod(iteration, schedule.iterations_per_epoch)
    order = list(range(len(rows)))
    random.Random(f"ppo-prompts:{seed}:{epoch}").shuffle(order)
    mine = order[rank::world_size]
    start = index * prompt_batch_size
    return [rows[i] for i in mine[start : start + prompt_batch_size]]
