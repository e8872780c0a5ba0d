"""The one place an actor's weights are exported to a rollout engine.

Every sync goes through `engine_weights`, so a change in what the engine must receive is made
here once: a LoRA actor (peft) will yield its merged base weights from this function.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from saferlhf.runners.common.models import unwrap
from torch import nn


def engine_weights(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) of every weight of `model` (DDP or DeepSpeed wrappers removed), under the
    Hugging Face names its checkpoint has (what vLLM's `load_weights` expects), detached and on
    the model's own device: the engine copies them into its own parameters, nothing is saved.

    Tied weights appear under both names (GPT-2's `lm_head.weight`); vLLM skips the tied copy.
    Full weights only: under ZeRO-3 the parameters are shards (the config refuses vllm there).
    """
    for name, tensor in unwrap(model).state_dict().items():
        yield name, tensor.detach()
