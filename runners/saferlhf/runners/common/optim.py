"""AdamW with the reference's parameter groups and HF learning-rate schedules (reference §2).

A plain `torch.optim.AdamW` is used for both backends: DeepSpeed takes it as a client optimizer,
which avoids JIT-building FusedAdam / cpu_adam (environment.md).
"""

from __future__ import annotations

import math

import torch
from saferlhf.runners.common.config import OptimSpec
from torch import nn

NO_DECAY_MARKERS = ("bias", "layernorm.weight", "norm.weight", "ln_")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: decayed weights, and biases / norm weights with no decay.

    The reference exempts names containing `bias` or `layernorm.weight`; we also exempt GPT-2's
    `ln_*` and LLaMA's `*norm.weight` (the reference decays LLaMA's final norm by accident).
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        lowered = name.lower()
        (no_decay if any(m in lowered for m in NO_DECAY_MARKERS) else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


FUSED_DEVICES = ("cpu", "cuda")  # where torch.optim.AdamW(fused=True) has a kernel (torch ≥ 2.4)


def build_optimizer(model: nn.Module, spec: OptimSpec) -> torch.optim.Optimizer:
    groups = param_groups(model, spec.weight_decay)
    return torch.optim.AdamW(groups, lr=spec.lr, betas=tuple(spec.betas),
                             **adamw_kernel(spec.implementation, groups))


def adamw_kernel(implementation: str, groups: list[dict]) -> dict[str, bool]:
    """The AdamW keyword that picks its kernel. `auto`: fused when every parameter is a floating
    tensor on a device with the fused kernel — on CPU it is one pass over all tensors instead of
    torch's default per-tensor loop (≈ 4× faster steps at the builtin models' sizes; the same
    update up to float rounding) — else torch's own default."""
    if implementation == "fused":
        return {"fused": True}
    if implementation in ("foreach", "for_loop"):
        return {"foreach": implementation == "foreach"}
    params = [p for g in groups for p in g["params"]]
    if params and all(p.device.type in FUSED_DEVICES and p.is_floating_point() for p in params):
        return {"fused": True}
    return {}


def build_scheduler(
    optimizer: torch.optim.Optimizer, spec: OptimSpec, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """HF `get_scheduler(type, warmup=int(warmup_ratio·T), T)` (reference §2)."""
    from transformers import get_scheduler

    name = "constant_with_warmup" if spec.lr_scheduler == "constant" else spec.lr_scheduler
    return get_scheduler(
        name, optimizer, num_warmup_steps=int(spec.warmup_ratio * total_steps),
        num_training_steps=max(total_steps, 1),
    )


def total_optimizer_steps(
    batches_per_epoch: int, epochs: int, grad_accum: int, max_steps: int | None
) -> int:
    """T = epochs · ceil(batches/grad_accum), capped by max_steps."""
    steps = epochs * math.ceil(batches_per_epoch / grad_accum)
    return min(steps, max_steps) if max_steps else steps
