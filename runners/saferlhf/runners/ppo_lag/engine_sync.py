"""The rollout engine of a PPO-Lag stage: built once, kept in step with the actor.

With `rollout.engine: vllm` the engine holds its own copy of the policy, started from a folder
on disk, so the actor's weights are copied into it in memory before it first samples (they may
come from a checkpoint, or be a LoRA actor's merged weights on a base folder) and after every
iteration's updates (`sync_engine`, under `rollout.weight_sync_deadline_seconds`), timed,
and reported as `rollout/weight_sync_seconds` (Prometheus: saferlhf_rollout_weight_sync_seconds).
With `hf` the engine samples from the actor itself and none of this happens.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from saferlhf.runners.common.rollout_engine.base import RolloutEngine
from saferlhf.runners.common.rollout_engine.factory import build_engine
from saferlhf.runners.common.rollout_engine.sync import sync_engine

SYNC_METRIC = "rollout/weight_sync_seconds"


@dataclass
class SyncStats:
    count: int = 0
    total_seconds: float = 0.0
    max_seconds: float = 0.0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.total_seconds += seconds
        self.max_seconds = max(self.max_seconds, seconds)

    def summary(self, engine: str) -> dict[str, object]:
        mean = self.total_seconds / self.count if self.count else None
        return {"rollout/engine": engine, "rollout/weight_syncs": self.count,
                "rollout/weight_sync_seconds_mean": mean,
                "rollout/weight_sync_seconds_max": self.max_seconds if self.count else None}


def make_engine(trainer) -> RolloutEngine:
    cfg, nets = trainer.cfg, trainer.nets
    return build_engine(
        cfg.rollout, model=nets.actor.bare, tokenizer=nets.tokenizer, model_path=cfg.actor_path,
        seed=cfg.seed + trainer.dist.rank, synced_gpus=trainer.synced_gpus,
        local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
        precision=nets.actor.sampling_precision,
    )


def sync_actor(trainer) -> None:
    """The actor's current weights into the engine (nothing for an engine that samples from the
    actor itself); the seconds go to the events at the current step."""
    engine: RolloutEngine = trainer.engine
    if not engine.needs_weight_sync:
        return
    with trainer.timer("weight_sync"):
        seconds = sync_engine(engine, trainer.nets.actor.bare,
                              deadline_seconds=trainer.cfg.rollout.weight_sync_deadline_seconds)
    trainer.sync_stats.add(seconds)
    trainer.sink.metrics(trainer.state.global_step, {SYNC_METRIC: seconds})
