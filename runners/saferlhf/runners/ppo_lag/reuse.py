"""When the first update may reuse the rollout's forwards (issue 12).

All micro-batches of a prompt batch are rolled out before any update (reference §5.2), so the
first update after a rollout runs the actor and both critics at exactly the weights the rollout's
no-grad forwards used. A training forward then equals the rollout forward — the PPO ratio of the
first epoch is 1 by construction — **if nothing random happens in train mode**: no dropout
anywhere in the three networks (train vs eval mode is otherwise the same computation for these
models; the critics keep no normaliser statistics). `reuse_possible` checks that.
"""

from __future__ import annotations

from torch import nn

# Dropout rates some families keep as config floats handed to the attention kernel in train mode
# (LLaMA, Mistral, Qwen2, Gemma) instead of nn.Dropout modules.
KERNEL_DROPOUT_FIELDS = ("attention_dropout",)


def dropout_free(model: nn.Module) -> bool:
    """No dropout module with p > 0 and no kernel dropout rate > 0 in any submodule's config."""
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            return False
        config = getattr(module, "config", None)
        for key in KERNEL_DROPOUT_FIELDS:
            value = getattr(config, key, 0.0) if config is not None else 0.0
            if isinstance(value, int | float) and value > 0:
                return False
    return True


def reuse_possible(*models: nn.Module | None) -> bool:
    """True when every given network (None skipped) is dropout-free."""
    return all(dropout_free(m) for m in models if m is not None)
