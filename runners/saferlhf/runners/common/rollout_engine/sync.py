"""Weight sync into a rollout engine under a deadline, timed (PPO-Lag, after each update)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from saferlhf.runners.common.deadline import call_with_deadline
from saferlhf.runners.common.lora import engine_weights
from saferlhf.runners.common.models import unwrap
from saferlhf.runners.common.rollout_engine.base import RolloutEngine
from torch import nn

DEADLINE_HINT = "raise rollout.weight_sync_deadline_seconds if the model is simply large"


def sync_engine(
    engine: RolloutEngine,
    model: nn.Module,
    *,
    deadline_seconds: float,
    clock: Callable[[], float] = time.perf_counter,
    hard_exit: Callable[[int], Any] = os._exit,
) -> float:
    """Copy `model`'s weights into `engine` — `engine_weights`, the one export (a LoRA actor's
    merged base weights), of the model under any DDP / DeepSpeed wrapper — and return the
    seconds it took. A sync that misses
    its deadline raises `DeadlineExceeded` (exit 75, retried) instead of hanging the stage;
    `hard_exit` is the deadline backstop's (saferlhf.runners.common.deadline)."""
    start = clock()
    call_with_deadline(lambda: engine.sync_weights(engine_weights(unwrap(model))),
                       deadline_seconds,
                       what=f"weight sync into the {engine.name} rollout engine",
                       hint=DEADLINE_HINT, hard_exit=hard_exit)
    return clock() - start
