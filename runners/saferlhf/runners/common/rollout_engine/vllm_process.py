"""vLLM's effects on the process that hosts it, kept in check (used by vllm_engine.py).

- `in_process_engine`: the uni-process engine (what makes the in-memory weight sync possible),
  quiet logs and no usage reporting over the network, set before vLLM is imported;
- `process_state_kept`: vLLM reseeds random / numpy / torch with its own seed when it starts and
  (CPU worker) replaces `torch.set_num_threads` with a no-op; both are undone;
- `unloaded_weights`: vLLM's in-place reload only *warns* about parameters it got no tensor
  for; this collects those warnings so the engine can refuse the sync.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
from collections.abc import Iterator

import numpy as np
import torch

log = logging.getLogger(__name__)

VLLM_ENV_DEFAULTS = {"VLLM_LOGGING_LEVEL": "WARNING", "VLLM_NO_USAGE_STATS": "1",
                     "DO_NOT_TRACK": "1"}
RELOAD_LOGGER = "vllm.model_executor.model_loader.reload.inplace"


@contextlib.contextmanager
def in_process_engine() -> Iterator[None]:
    """The uni-process engine (what makes the in-memory sync possible), quiet and offline."""
    previous = os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING")
    if previous not in (None, "0"):
        log.warning("VLLM_ENABLE_V1_MULTIPROCESSING=%s ignored: the rollout engine runs in this "
                    "process so that weights sync in memory", previous)
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    for key, value in VLLM_ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    yield


class _WarningsOf(logging.Handler):
    def __init__(self, needle: str) -> None:
        super().__init__(logging.WARNING)
        self.needle = needle
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if self.needle in message:
            self.messages.append(message)


@contextlib.contextmanager
def unloaded_weights() -> Iterator[list[str]]:
    """Collects vLLM's "Following weights were not loaded" warnings of a reload."""
    logger = logging.getLogger(RELOAD_LOGGER)
    handler, level = _WarningsOf("were not loaded"), logger.level
    logger.addHandler(handler)
    logger.setLevel(min(level or logging.WARNING, logging.WARNING))
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@contextlib.contextmanager
def process_state_kept() -> Iterator[None]:
    """Undo vLLM's start-up side effects: it reseeds random / numpy / torch with its own seed and
    (CPU worker) replaces `torch.set_num_threads` with a no-op."""
    py_state, np_state = random.getstate(), np.random.get_state()
    set_num_threads, threads = torch.set_num_threads, torch.get_num_threads()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.set_num_threads = set_num_threads
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
