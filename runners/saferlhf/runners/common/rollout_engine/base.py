"""The interface every rollout engine implements (see the package docstring)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable

import torch
from saferlhf.runners.common.generation import Rollout


class RolloutEngine(ABC):
    """Samples responses to templated prompts; PPO-Lag recomputes their log-probs with the actor.

    Sampling follows `saferlhf.runners.common.generation.generate`: rows come out prompt-major
    (row i·n + j is sample j of prompt i); `seed` makes a draw reproducible, None draws from (and
    advances) the global torch RNG, which is what a resumable trainer wants.
    """

    name: str = "base"
    needs_weight_sync: bool = False  # False: it samples from the trained module itself

    @abstractmethod
    def generate(
        self,
        prompts: list[str],
        *,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        repetition_penalty: float = 1.0,
        num_return_sequences: int = 1,
        seed: int | None = None,
        do_sample: bool = True,
        max_prompt_tokens: int | None = None,
    ) -> Rollout:
        """Sample `num_return_sequences` responses per prompt (do_sample=False: greedy)."""

    @property
    @abstractmethod
    def context_size(self) -> int | None:
        """Positions the policy has (prompt + response), when known."""

    def sync_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:  # noqa: B027
        """Load the actor's current weights (Hugging Face names) into the engine. Engines that
        sample from the trained module itself have nothing to do."""

    def sleep(self) -> None:  # noqa: B027
        """Free what the engine holds while the trainer needs the memory (where supported)."""

    def wake(self) -> None:  # noqa: B027
        """Undo `sleep` before the next `generate`."""

    def close(self) -> None:  # noqa: B027
        """Release the engine for good."""
