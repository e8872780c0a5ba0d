"""A trained model with its optimizer and scheduler, on plain PyTorch or a DeepSpeed engine.

The step loop calls `engine(...)` for forwards and `engine.backward_step(loss)` for the update, and
never needs to know the backend. Plain PyTorch averages gradients across ranks by SUM then divide
(no DDP wrapper: `generate` and the critics' unused LM-free heads stay simple); DeepSpeed does its
own reduction, clipping and scheduling. Frozen models (reference, RM, CM) are wrapped only under
ZeRO-3, where their parameters must be sharded and gathered too.
"""

from __future__ import annotations

import contextlib
import logging

import torch
from saferlhf.runners.common.config import BackendSpec, OptimSpec
from saferlhf.runners.common.dist import get_world_size, is_dist
from saferlhf.runners.common.optim import build_optimizer, build_scheduler
from torch import nn

log = logging.getLogger(__name__)


def autocast(backend: BackendSpec, *, sampling: bool = False) -> contextlib.AbstractContextManager:
    """The forward-pass precision context: bf16 autocast for `precision: bf16` on the plain
    backend (DeepSpeed casts the models itself), a no-op otherwise.

    `sampling`: the rollout's decode loop. On CPU it stays fp32 — at a few rows per step its
    matrix products are too small for bf16 to pay (measured slower on AVX-512 BF16); the
    sampled tokens are then scored by the bf16 forwards like any behaviour policy's."""
    cuda = torch.cuda.is_available()
    if backend.kind != "plain" or backend.precision == "fp32" or (sampling and not cuda):
        return contextlib.nullcontext()
    return torch.autocast("cuda" if cuda else "cpu", dtype=torch.bfloat16)


def check_precision(backend: BackendSpec) -> None:
    """bf16 needs hardware support to be fast: say so where the CPU has neither AMX nor
    AVX-512 BF16 (it still runs, emulated and slower)."""
    if backend.kind != "plain" or backend.precision != "bf16" or torch.cuda.is_available():
        return
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        log.warning("precision bf16 on a CPU without bf16 instructions (AMX / AVX-512 BF16): "
                    "it runs emulated, slower than fp32")


class Autocast(nn.Module):
    """A frozen model whose forward runs under `autocast(backend)`; `.module` is the model (so
    `unwrap` finds it)."""

    def __init__(self, module: nn.Module, backend: BackendSpec) -> None:
        super().__init__()
        self.module = module
        self.backend = backend

    def forward(self, *args, **kwargs):
        with autocast(self.backend):
            return self.module(*args, **kwargs)


class TrainedModel:
    """model + optimizer + scheduler behind one interface (plain or DeepSpeed)."""

    def __init__(
        self, model: nn.Module, spec: OptimSpec, total_steps: int, backend: BackendSpec,
        *, micro_batch_size: int,
    ) -> None:
        self.spec = spec
        self.backend = backend
        optimizer = build_optimizer(model, spec)
        scheduler = build_scheduler(optimizer, spec, total_steps)
        if backend.gradient_checkpointing and hasattr(model, "gradient_checkpointing_enable"):
            model.gradient_checkpointing_enable()
        if backend.kind == "deepspeed":
            import deepspeed
            from saferlhf.runners.common.deepspeed_config import train_config

            config = train_config(
                backend.deepspeed, micro_batch_size=micro_batch_size,
                gradient_accumulation_steps=1, world_size=get_world_size(),
                grad_clip=spec.grad_clip,
            )
            engine, optimizer, _, scheduler = deepspeed.initialize(
                model=model, optimizer=optimizer, lr_scheduler=scheduler, config=config,
            )
            self.module: nn.Module = engine
            self.engine = engine
        else:
            self.module = model
            self.engine = None
        self.optimizer = optimizer
        self.scheduler = scheduler

    # -- forward / update ----------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        with autocast(self.backend):
            return self.module(*args, **kwargs)

    def sampling_precision(self) -> contextlib.AbstractContextManager:
        """The precision context for sampling from `bare` (see `autocast`)."""
        return autocast(self.backend, sampling=True)

    @property
    def bare(self) -> nn.Module:
        """The underlying model (for generate, save and state dicts)."""
        return self.engine.module if self.engine is not None else self.module

    def backward_step(self, loss: torch.Tensor) -> None:
        """backward, gradient average across ranks, clip, optimizer and scheduler step."""
        if self.engine is not None:
            self.engine.backward(loss)
            self.engine.step()
            return
        loss.backward()
        if is_dist():
            world = get_world_size()
            for p in self.module.parameters():
                if p.grad is not None:
                    torch.distributed.all_reduce(p.grad, op=torch.distributed.ReduceOp.SUM)
                    p.grad.div_(world)
        torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.spec.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def train(self, mode: bool = True) -> None:
        self.module.train(mode)

    # -- state -----------------------------------------------------------------------------------
    def full_state_dict(self) -> dict[str, torch.Tensor] | None:
        """A full state dict for saving the final model (gathered under ZeRO-3), else None."""
        if self.engine is not None and self.backend.deepspeed.zero_stage == 3:
            return self.engine._zero3_consolidated_16bit_state_dict()
        return None


def frozen(model: nn.Module, backend: BackendSpec) -> nn.Module:
    """A frozen model in eval mode; under ZeRO-3 a DeepSpeed inference-style engine (sharded)."""
    model.requires_grad_(False)
    model.eval()
    if backend.kind == "deepspeed" and backend.deepspeed.zero_stage == 3:
        import deepspeed
        from saferlhf.runners.common.deepspeed_config import eval_config

        engine, *_ = deepspeed.initialize(model=model, config=eval_config(backend.deepspeed))
        engine.eval()
        return engine
    if backend.kind == "plain" and backend.precision != "fp32":
        return Autocast(model, backend).eval()
    return model
