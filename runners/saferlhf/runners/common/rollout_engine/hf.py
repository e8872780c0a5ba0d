"""Hugging Face `generate` on the policy module itself, behind the engine interface."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from saferlhf.runners.common.generation import Rollout, context_size, generate
from saferlhf.runners.common.rollout_engine.base import RolloutEngine
from torch import nn


class HFEngine(RolloutEngine):
    """Samples from `model` directly: whatever the optimizer did is already in its weights, so
    there is nothing to sync. `synced_gpus=True` is required under ZeRO-3. `decode` and `compile`
    pick the sampling loop (`generate`: the static-cache loop or Hugging Face's); `precision`
    gives the context sampling runs in (the trainer's autocast for bf16 policies)."""

    name = "hf"
    needs_weight_sync = False

    def __init__(self, model: nn.Module, tokenizer, *, synced_gpus: bool = False,
                 decode: str = "auto", compile: bool = False,
                 precision: Callable[[], contextlib.AbstractContextManager] | None = None,
                 ) -> None:
        self.model, self.tokenizer, self.synced_gpus = model, tokenizer, synced_gpus
        self.decode, self.compile = decode, compile
        self.precision = precision or contextlib.nullcontext

    @property
    def context_size(self) -> int | None:
        return context_size(self.model)

    def generate(self, prompts: list[str], *, max_new_tokens: int, temperature: float = 1.0,
                 top_p: float = 1.0, repetition_penalty: float = 1.0,
                 num_return_sequences: int = 1, seed: int | None = None, do_sample: bool = True,
                 max_prompt_tokens: int | None = None) -> Rollout:
        with self.precision():
            return generate(
                self.model, self.tokenizer, prompts, max_new_tokens=max_new_tokens,
                temperature=temperature, top_p=top_p, repetition_penalty=repetition_penalty,
                num_return_sequences=num_return_sequences, seed=seed, do_sample=do_sample,
                synced_gpus=self.synced_gpus, max_prompt_tokens=max_prompt_tokens,
                decode=self.decode, compile=self.compile,
            )
