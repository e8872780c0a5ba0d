"""Resumable checkpoints under `output_dir/checkpoints/` (DESIGN §5), written atomically.

A checkpoint is a folder `step-<N>` with
- `state.pt`     — everything shared by all ranks (model / optimizer / scheduler state dicts of the
                   plain backend, data position, epoch, λ …), written by rank 0;
- `rng-rank<r>.pt` — each rank's python / numpy / torch (and CUDA) RNG states;
- `<name>/`      — one DeepSpeed `save_checkpoint` folder per engine (all ranks write their shards);
- `manifest.json` — world size, state keys and engine names, checked on resume.
Everything is first written to `.tmp-step-<N>` and renamed; `latest` names the newest complete
checkpoint. A resume that cannot restore every part raises `ResumeError` — it never silently
restarts from scratch. `StopSignal` turns SIGTERM into "checkpoint at the next step, then exit".
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import signal
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from saferlhf.runners.common.dist import all_reduce_sum, barrier, get_rank, get_world_size, is_rank0
from saferlhf.runners.common.errors import EXIT_INVALID, RunnerError

log = logging.getLogger(__name__)

FAULT_ENV = "SAFERLHF_FAULT_AFTER_STEPS"  # test hook: SIGTERM ourselves after this step
# Test hook of the chaos suite: `<point>@<step>` SIGKILLs this process at that point of writing
# checkpoint <step> (no handler runs, nothing is flushed: what a node loss or the OOM killer does).
KILL_ENV = "SAFERLHF_FAULT_KILL_IN_CHECKPOINT"
KILL_POINTS = ("started", "state_written", "manifest_written", "renamed", "marked")


class ResumeError(RunnerError):
    """A checkpoint exists but cannot be fully restored (permanent: a retry would fail again)."""

    exit_code = EXIT_INVALID


def checkpoint_root(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def frozen_parameter_names(model: torch.nn.Module) -> set[str]:
    return {name for name, p in model.named_parameters(remove_duplicate=False)
            if not p.requires_grad}


def model_state(model: torch.nn.Module) -> dict[str, Any]:
    """A model's state dict for a checkpoint, without frozen parameters: a LoRA model's base is
    reloaded from its folder on resume, so only adapters, trained heads and buffers are saved."""
    frozen = frozen_parameter_names(model)
    return {k: v for k, v in model.state_dict().items() if k not in frozen}


def restore_model_state(model: torch.nn.Module, state: Mapping[str, Any], where: str) -> None:
    """Load `model_state` back; anything but the frozen parameters missing is a ResumeError."""
    try:
        missing, unexpected = model.load_state_dict(dict(state), strict=False)
    except RuntimeError as err:  # shapes differ (e.g. another LoRA rank)
        raise ResumeError(f"cannot resume {where}: {str(err).splitlines()[0]} … (a different "
                          "model or LoRA setting than the run that wrote the checkpoint?)"
                          ) from None
    missing = sorted(set(missing) - frozen_parameter_names(model))
    if missing or unexpected:
        raise ResumeError(f"cannot resume {where}: the checkpoint lacks {missing[:5]} and has "
                          f"unexpected {sorted(unexpected)[:5]} (a different model or LoRA "
                          "setting than the run that wrote it?)")


def _has_frozen(engine: Any) -> bool:
    return any(not p.requires_grad for p in engine.module.parameters())


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    root = checkpoint_root(output_dir)
    marker = root / "latest"
    if not marker.exists():
        return None
    path = root / marker.read_text().strip()
    if not path.is_dir():
        raise ResumeError(f"{marker} names {path.name}, which does not exist; delete {root} to "
                          "start over or restore the folder")
    return path


def save_checkpoint(
    output_dir: str | Path,
    step: int,
    state: Mapping[str, Any],
    *,
    engines: Mapping[str, Any] | None = None,
    keep: int = 2,
) -> Path:
    """Write checkpoint `step` (collective: every rank must call it). Returns its final path."""
    root = checkpoint_root(output_dir)
    name = f"step-{step}"
    tmp, final = root / f".tmp-{name}", root / name
    engines = dict(engines or {})
    if is_rank0():
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    _fault("started", step)
    for engine_name, engine in engines.items():  # frozen (LoRA base) weights are not saved
        engine.save_checkpoint(str(tmp / engine_name), tag="ds",
                               exclude_frozen_parameters=_has_frozen(engine))
    torch.save(rng_state(), tmp / f"rng-rank{get_rank()}.pt")
    if is_rank0():
        torch.save(dict(state), tmp / "state.pt")
        _fault("state_written", step)
        manifest = {"step": step, "world_size": get_world_size(), "state_keys": sorted(state),
                    "engines": sorted(engines)}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
        _fault("manifest_written", step)
    barrier()
    if is_rank0():
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        _fault("renamed", step)
        marker_tmp = root / "latest.tmp"
        marker_tmp.write_text(name)
        os.replace(marker_tmp, root / "latest")
        _fault("marked", step)
        _prune(root, keep)
    barrier()
    return final


def _fault(point: str, step: int) -> None:
    """The KILL_ENV test hook: SIGKILL this process at `point` of checkpoint `step`."""
    wanted = os.environ.get(KILL_ENV, "")
    if wanted and wanted == f"{point}@{step}":
        log.warning("test hook %s=%s: SIGKILL now", KILL_ENV, wanted)
        os.kill(os.getpid(), signal.SIGKILL)


def _prune(root: Path, keep: int) -> None:
    done = sorted(
        (p for p in root.glob("step-*") if p.is_dir()), key=lambda p: int(p.name.split("-")[1])
    )
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(
    path: Path,
    *,
    expected_keys: Iterable[str],
    engines: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Restore RNG states and DeepSpeed engines; return the shared state for the caller to apply.

    Raises ResumeError when anything expected is missing or the world size changed.
    """
    engines = dict(engines or {})
    manifest_path = path / "manifest.json"
    if not manifest_path.exists():
        raise ResumeError(f"{path} has no manifest.json: an incomplete checkpoint")
    manifest = json.loads(manifest_path.read_text())
    problems = []
    if manifest["world_size"] != get_world_size():
        problems.append(
            f"it was written by {manifest['world_size']} processes, this run has "
            f"{get_world_size()} (per-rank RNG and data positions cannot be restored)"
        )
    missing = sorted(set(expected_keys) - set(manifest["state_keys"]))
    if missing:
        problems.append(f"state lacks {missing}")
    if sorted(engines) != manifest["engines"]:
        problems.append(f"engines {manifest['engines']} saved, {sorted(engines)} to restore")
    rng_file = path / f"rng-rank{get_rank()}.pt"
    if not rng_file.exists():
        problems.append(f"no {rng_file.name}")
    if problems:
        raise ResumeError(f"cannot resume from {path}: " + "; ".join(problems)
                          + ". Delete the checkpoints folder to start over.")
    state = torch.load(path / "state.pt", map_location="cpu", weights_only=False)
    for engine_name, engine in engines.items():
        loaded, _ = engine.load_checkpoint(
            str(path / engine_name), tag="ds", load_optimizer_states=True,
            load_lr_scheduler_states=True, load_module_strict=not _has_frozen(engine),
        )
        if loaded is None:
            raise ResumeError(f"cannot resume from {path}: DeepSpeed could not load {engine_name}")
    set_rng_state(torch.load(rng_file, map_location="cpu", weights_only=False))
    log.info("resumed from %s (step %s)", path, manifest["step"])
    return state


class StopSignal:
    """SIGTERM → `requested` becomes true; the loop checkpoints at the next step and exits.

    `should_stop()` agrees across ranks (any rank signalled → all stop), so no rank is left
    waiting in a collective. `after_step(step)` applies the SAFERLHF_FAULT_AFTER_STEPS test hook.
    """

    def __init__(self) -> None:
        self.requested = False
        self._fault_step = int(os.environ[FAULT_ENV]) if os.environ.get(FAULT_ENV) else None
        try:
            signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread (tests calling the loop in a thread)
            log.debug("SIGTERM handler not installed outside the main thread")

    def _handle(self, signum, frame) -> None:  # noqa: ARG002
        log.warning("SIGTERM received: checkpointing at the next step, then exiting")
        self.requested = True

    def after_step(self, step: int) -> None:
        if self._fault_step is not None and step == self._fault_step:
            os.kill(os.getpid(), signal.SIGTERM)

    def should_stop(self) -> bool:
        flag = torch.tensor([1.0 if self.requested else 0.0])
        return bool(all_reduce_sum(flag).item() > 0)
