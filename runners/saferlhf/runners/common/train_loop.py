"""The training loop shared by the SFT, reward and cost stages, over two backends.

`build_engine` wraps a model for one backend — plain PyTorch (one process or DDP on gloo/NCCL) or
DeepSpeed ZeRO 0–3 (deepspeed imported only there) — behind one small interface; `run_training`
owns every side effect of a stage: data order (seeded, `set_epoch` every epoch), gradient
accumulation, metric/progress/checkpoint events on rank 0, periodic and SIGTERM checkpoints,
resume of all state, per-epoch held-out evaluation.

A stage supplies a `Task`: its loss on a batch (a pure function of the model's outputs), its
held-out evaluation and how to save its model.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from saferlhf.runners.common import checkpoint as ckpt
from saferlhf.runners.common.config import OptimSpec, StageIO
from saferlhf.runners.common.deepspeed_config import train_config
from saferlhf.runners.common.dist import DistInfo, all_reduce_mean, get_rank, get_world_size
from saferlhf.runners.common.errors import InvalidInputError, RunnerError, TransientError
from saferlhf.runners.common.events import EventSink
from saferlhf.runners.common.optim import build_optimizer, build_scheduler
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

log = logging.getLogger(__name__)


class Stopped(TransientError):
    """SIGTERM: a checkpoint was written; exit 75 so a retry resumes from it."""


class Task(Protocol):
    def loss(self, module: nn.Module, batch: dict[str, torch.Tensor]
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...

    def evaluate(self, module: nn.Module, samples: Sequence[Any]) -> dict[str, float]: ...

    def save(self, bare: nn.Module, out_dir: str, state_dict: dict | None) -> None: ...


# --------------------------------------------------------------------------------------------
# Engines
# --------------------------------------------------------------------------------------------


@dataclass
class Engine:
    module: nn.Module  # call this for forward (DDP wrapper, DeepSpeed engine, or the model)
    bare: nn.Module
    grad_accum: int
    optimizer: torch.optim.Optimizer
    scheduler: Any
    grad_clip: float
    deepspeed: Any = None  # the DeepSpeed engine, when that backend is used
    zero_stage: int = 0
    micro: int = 0

    def step(self, loss: torch.Tensor) -> bool:
        """Backward one micro-batch; True when this completed an optimizer step."""
        self.micro += 1
        boundary = self.micro % self.grad_accum == 0
        if self.deepspeed is not None:
            self.deepspeed.backward(loss)
            self.deepspeed.step()  # DeepSpeed accumulates and steps the scheduler itself
            return boundary
        (loss / self.grad_accum).backward()
        if boundary:
            torch.nn.utils.clip_grad_norm_(self.bare.parameters(), self.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        return boundary

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def train(self) -> None:
        self.module.train()

    def checkpoint_state(self) -> dict[str, Any]:
        if self.deepspeed is not None:
            return {}  # in the DeepSpeed engine folder
        return {"model": ckpt.model_state(self.bare), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict()}

    def checkpoint_engines(self) -> dict[str, Any]:
        return {"model": self.deepspeed} if self.deepspeed is not None else {}

    def restore(self, state: dict[str, Any]) -> None:
        if self.deepspeed is not None:
            return
        ckpt.restore_model_state(self.bare, state["model"], "the model")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    def full_state_dict(self) -> dict | None:
        """Full weights for saving; ZeRO-3 gathers them (collective) onto rank 0."""
        if self.deepspeed is not None and self.zero_stage == 3:
            return self.deepspeed._zero3_consolidated_16bit_state_dict()
        return None


def build_engine(model: nn.Module, cfg: StageIO, optim: OptimSpec, total_steps: int,
                 info: DistInfo) -> Engine:
    grad_accum = cfg.gradient_accumulation_steps
    if cfg.backend.gradient_checkpointing:
        target = getattr(model, "backbone", model)
        target.gradient_checkpointing_enable()
    model.to(info.device)
    optimizer = build_optimizer(model, optim)
    scheduler = build_scheduler(optimizer, optim, total_steps)
    if cfg.backend.kind == "deepspeed":
        import deepspeed  # lazy: only this backend needs it

        ds_cfg = train_config(
            cfg.backend.deepspeed, micro_batch_size=cfg.batch_size,
            gradient_accumulation_steps=grad_accum, world_size=info.world_size,
            grad_clip=optim.grad_clip,
        )
        engine, optimizer, _, scheduler = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_cfg,
        )
        return Engine(engine, model, grad_accum, optimizer, scheduler, optim.grad_clip,
                      deepspeed=engine, zero_stage=cfg.backend.deepspeed.zero_stage)
    module: nn.Module = model
    if info.world_size > 1:
        module = nn.parallel.DistributedDataParallel(
            model, device_ids=[info.local_rank] if info.device.type == "cuda" else None,
            find_unused_parameters=True,
        )
    return Engine(module, model, grad_accum, optimizer, scheduler, optim.grad_clip)


# --------------------------------------------------------------------------------------------
# Loop
# --------------------------------------------------------------------------------------------


@dataclass
class LoopState:
    step: int = 0  # optimizer steps done
    epoch: int = 0  # current epoch
    batch_in_epoch: int = 0  # micro-batches of this epoch already consumed
    history: dict[str, float] = field(default_factory=dict)  # last logged values
    micro_batches: int = 0  # micro-batches trained on in all, over every resume
    total_steps: int = 0  # the optimizer steps the run was planned for (0: not recorded)


def make_loader(samples: Sequence[Any], batch_size: int, collate: Callable, seed: int,
                shuffle: bool = True) -> DataLoader:
    sampler = DistributedSampler(
        samples, num_replicas=get_world_size(), rank=get_rank(), shuffle=shuffle, seed=seed,
    )
    return DataLoader(samples, batch_size=batch_size, sampler=sampler, collate_fn=collate)


def steps_per_epoch(loader: DataLoader, grad_accum: int, what: str = "data") -> int:
    steps = len(loader) // grad_accum
    if steps == 0:
        raise InvalidInputError(
            f"{len(loader)} micro-batches per process per epoch is fewer than "
            f"gradient_accumulation_steps={grad_accum}; lower batch_size or "
            "gradient_accumulation_steps, or add data", field=what,
        )
    return steps


def run_training(
    cfg: StageIO,
    task: Task,
    engine: Engine,
    loader: DataLoader,
    eval_samples: Sequence[Any],
    sink: EventSink,
    total_steps: int,
) -> dict[str, float]:
    """Train until `total_steps`, resuming from the latest checkpoint; return the final metrics."""
    state = LoopState()
    per_epoch = steps_per_epoch(loader, engine.grad_accum)
    used_batches = per_epoch * engine.grad_accum  # incomplete accumulation groups are dropped
    resume_from = ckpt.latest_checkpoint(cfg.output_dir)
    if resume_from is not None:
        keys = ["loop"] + ([] if engine.deepspeed is not None else
                           ["model", "optimizer", "scheduler"])
        saved = ckpt.load_checkpoint(resume_from, expected_keys=keys,
                                     engines=engine.checkpoint_engines())
        engine.restore(saved)
        state = resumed_state(saved["loop"], resume_from, total_steps, engine.grad_accum,
                              used_batches)
        engine.micro = state.step * engine.grad_accum
        sink.log(f"resumed from {resume_from.name} at step {state.step}")
    else:
        ckpt.seed_everything(cfg.seed)
    state.total_steps = total_steps
    stop = ckpt.StopSignal()
    eval_results: dict[str, float] = {}
    eval_step = -1
    sums: dict[str, float] = {}
    n_micro = 0
    engine.train()
    while state.step < total_steps and state.epoch < cfg.epochs:
        loader.sampler.set_epoch(state.epoch)
        batches = itertools.islice(iter(loader), state.batch_in_epoch, used_batches)
        for batch in batches:
            batch = _to(batch, engine.bare)
            loss, metrics = task.loss(engine.module, batch)
            stepped = engine.step(loss)
            state.batch_in_epoch += 1
            state.micro_batches += 1
            for key, value in {"train/loss": loss, **metrics}.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach())
            n_micro += 1
            if not stepped:
                continue
            state.step += 1
            if state.step % cfg.log_every_steps == 0 or state.step == total_steps:
                values = _reduce({k: v / n_micro for k, v in sums.items()})
                values["train/lr"] = engine.lr
                values["train/epoch"] = state.epoch + state.batch_in_epoch / used_batches
                sink.metrics(state.step, values)
                sink.progress(state.step, total_steps)
                state.history = values
                log.info("step %d/%d %s", state.step, total_steps, _fmt(values))
            sums, n_micro = {}, 0
            stop.after_step(state.step)
            halt = stop.should_stop()
            if halt or state.step % cfg.checkpoint_every_steps == 0:
                _checkpoint(cfg, engine, state, sink)
            if halt:
                raise Stopped(f"stopped by SIGTERM after step {state.step}; checkpoint written")
            if state.step >= total_steps:
                break
        if state.batch_in_epoch >= used_batches:
            state.epoch += 1
            state.batch_in_epoch = 0
            if eval_samples:
                eval_results = _evaluate(task, engine, eval_samples, sink, state.step)
                eval_step = state.step
    check_complete(state, total_steps, engine.grad_accum)
    if eval_samples and eval_step != state.step:
        eval_results = _evaluate(task, engine, eval_samples, sink, state.step)
    sink.progress(state.step, total_steps)
    return {**state.history, **eval_results, "train/step": float(state.step)}


class IncompleteRunError(RunnerError):
    """The loop ended without doing all the planned work (a resume that skipped steps or data):
    never exit 0 with a model trained on less than the config says (verl #7401)."""


def resumed_state(loop: dict[str, Any], path: Any, total_steps: int, grad_accum: int,
                  used_batches: int) -> LoopState:
    """The loop state of a checkpoint, checked against this run's plan: a checkpoint from a run
    planned differently (data, batch size, epochs or max_steps changed) or whose data position
    disagrees with its step count cannot be resumed without skipping or repeating work."""
    state = LoopState(**loop)
    if not state.micro_batches and state.step:  # a checkpoint from before this field existed
        state.micro_batches = state.epoch * used_batches + state.batch_in_epoch
    problems = []
    if state.total_steps and state.total_steps != total_steps:
        problems.append(f"it was written by a run planned for {state.total_steps} optimizer "
                        f"steps, this run plans {total_steps} (the data, batch_size, epochs or "
                        "max_steps changed)")
    if state.micro_batches != state.step * grad_accum:
        problems.append(f"it trained {state.micro_batches} micro-batches in {state.step} steps, "
                        f"expected {state.step * grad_accum} (gradient_accumulation_steps="
                        f"{grad_accum})")
    position = state.epoch * used_batches + state.batch_in_epoch
    if position != state.micro_batches:
        problems.append(f"its data position (epoch {state.epoch}, micro-batch "
                        f"{state.batch_in_epoch} of {used_batches}) is micro-batch {position}, "
                        f"but {state.micro_batches} were trained")
    if problems:
        raise ckpt.ResumeError(f"cannot resume from {path}: " + "; ".join(problems)
                               + ". Restore the stage's config, or delete the checkpoints "
                               "folder to start over.")
    return state


def check_complete(state: LoopState, total_steps: int, grad_accum: int) -> None:
    """The completion check: the planned optimizer steps and micro-batches all ran."""
    expected = total_steps * grad_accum
    if state.step != total_steps or state.micro_batches != expected:
        raise IncompleteRunError(
            f"training ended after {state.step} of {total_steps} optimizer steps and "
            f"{state.micro_batches} of {expected} micro-batches: work was skipped (a resume "
            "that lost its data position?). No model is written; delete the checkpoints "
            "folder to start over.")


def _to(batch: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    device = next(model.parameters()).device
    return {k: v.to(device) for k, v in batch.items()}


def _reduce(values: dict[str, float]) -> dict[str, float]:
    """Mean of each metric over ranks (SUM then divide)."""
    keys = sorted(values)
    stacked = all_reduce_mean(torch.tensor([values[k] for k in keys], dtype=torch.float64))
    return {k: float(v) for k, v in zip(keys, stacked.tolist(), strict=True)}


def _evaluate(task: Task, engine: Engine, samples, sink: EventSink, step: int) -> dict[str, float]:
    engine.module.eval()
    with torch.no_grad():
        results = task.evaluate(engine.module, samples)
    engine.train()
    if results:
        sink.metrics(step, results)
        log.info("eval at step %d %s", step, _fmt(results))
    return results


def _checkpoint(cfg: StageIO, engine: Engine, state: LoopState, sink: EventSink) -> None:
    loop = {"step": state.step, "epoch": state.epoch, "batch_in_epoch": state.batch_in_epoch,
            "history": state.history, "micro_batches": state.micro_batches,
            "total_steps": state.total_steps}
    path = ckpt.save_checkpoint(
        cfg.output_dir, state.step, {"loop": loop, **engine.checkpoint_state()},
        engines=engine.checkpoint_engines(),
    )
    sink.checkpoint(state.step, path)


def _fmt(values: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in sorted(values.items()) if math.isfinite(v))
