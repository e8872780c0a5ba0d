"""Does each stage fit its GPUs? The memory plan (`saferlhf plan`) and the submit-time check.

A stage is checked when it has GPUs (`gpus_per_node > 0`) and `resources.gpu_memory` says how much
one has; its peak per GPU (estimate.py) must fit under that minus a runtime reserve. A stage that
does not fit is a spec error naming the stage, the estimate against the budget, its largest terms,
and the changes that would make it fit, each re-estimated (ZeRO-3, offload, gradient
checkpointing, LoRA, a smaller micro-batch, more GPUs).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

from saferlhf.service.errors import FieldViolation
from saferlhf.service.planning.advice import advice as what_would_fit
from saferlhf.service.planning.estimate import StageEstimate, estimate
from saferlhf.service.planning.memory import Layout, size
from saferlhf.service.planning.model_config import Unknown
from saferlhf.service.planning.shapes import LoraTargetError
from saferlhf.service.planning.workload import Inventory, Workload
from saferlhf.service.spec.models import JobSpec, quantity_bytes
from saferlhf.service.spec.yamlmap import Loc, line_of

log = logging.getLogger(__name__)
STAGES = ("sft", "reward", "cost", "ppo_lag", "eval", "collect")
# Kept free on every GPU for what the estimate does not model: the CUDA context and kernels,
# cuBLAS/cuDNN workspaces, NCCL buffers, allocator fragmentation. An allowance, not a measurement.
RUNTIME_RESERVE_BYTES = 1 << 30
TIGHT = 0.9  # above this share of the usable memory a stage is "tight" (fits, little headroom)
@dataclass(frozen=True)
class StageRow:
    """One stage of the memory plan."""

    stage: str  # spec stage key
    field: str  # spec path the verdict is about
    status: str  # fits | tight | does not fit | not checked | cpu | unknown
    devices: str  # e.g. "2 × 8 GPUs (16 processes)" or "cpu"
    layout: str  # e.g. "DeepSpeed ZeRO-3 bf16" or "plain fp32"
    estimate: StageEstimate | None = None
    peak_bytes: int | None = None  # per GPU
    peak_phase: str = ""
    gpu_bytes: int | None = None
    usable_bytes: int | None = None
    reason: str = ""  # why unknown / not checked
    advice: tuple[str, ...] = ()
    workload: Workload | None = None


def layout_text(layout: Layout) -> str:
    if not layout.deepspeed:
        return "plain fp32"
    offload = [k for k, on in (("parameters", layout.offload_params),
                               ("optimizer", layout.offload_optimizer)) if on]
    text = f"DeepSpeed ZeRO-{layout.zero_stage} {layout.precision}"
    return text + (f", offload {' + '.join(offload)}" if offload else "")


def _devices(w: Workload) -> str:
    r = w.resources
    if r.gpus_per_node == 0:
        return "cpu"
    nodes = f"{r.nodes} × " if r.nodes > 1 else ""
    procs = r.nodes * r.nproc_per_node
    return f"{nodes}{r.gpus_per_node} GPU{'s' if r.gpus_per_node > 1 else ''}" + (
        f" ({procs} processes)" if procs > 1 else "")


def memory_plan(job: JobSpec, *, checked_only: bool = False) -> list[StageRow]:
    """Every stage that runs, with its estimate and verdict (the spec is already valid).
    `checked_only`: skip estimating stages that cannot be rejected (no GPUs or no
    `gpu_memory`, and no LoRA to check) — what the submit-time check needs, cheaply."""
    inventory = Inventory(job)
    rows = (_row(inventory, name, checked_only) for name in STAGES)
    return [row for row in rows if row is not None]


def _row(inventory: Inventory, name: str, checked_only: bool = False) -> StageRow | None:
    field = f"spec.stages.{name}"
    work = inventory.workload(name)
    if work is None:
        return None
    if isinstance(work, Unknown):
        return StageRow(name, field, "unknown", "", "", reason=work.reason)
    devices, layout = _devices(work), layout_text(work.layout)
    checkable = work.resources.gpus_per_node > 0 and work.resources.gpu_memory is not None
    if checked_only and not checkable and all(n.lora is None for n in work.networks):
        return StageRow(name, field, "not checked", devices, layout, workload=work)
    try:
        est = estimate(work)
    except LoraTargetError as exc:
        return StageRow(name, field, "unknown", devices, layout, reason=str(exc),
                        workload=work)
    gpu = work.resources.gpu_memory
    gpu_bytes = quantity_bytes(gpu) if gpu else None
    phase, peak = est.peak_phase(gpu_bytes)
    row = StageRow(name, field, "not checked", devices, layout, estimate=est, peak_bytes=peak,
                   peak_phase=phase.name if phase else "resident", gpu_bytes=gpu_bytes,
                   workload=work)
    if work.resources.gpus_per_node == 0:
        return replace(row, status="cpu", reason="runs on CPU: not checked")
    if gpu_bytes is None or peak is None:
        return replace(row, reason="set resources.gpu_memory (e.g. 80Gi) to check it")
    usable = gpu_bytes - RUNTIME_RESERVE_BYTES
    status = "fits" if peak <= TIGHT * usable else "tight" if peak <= usable else "does not fit"
    advice = what_would_fit(work, usable, gpu_bytes) if status == "does not fit" else ()
    starved = _starved_engine(est, gpu_bytes)
    if starved:
        return replace(row, status="does not fit", usable_bytes=usable, reason=starved,
                       advice=advice)
    return replace(row, status=status, usable_bytes=usable, advice=advice)


def _starved_engine(est: StageEstimate, gpu_bytes: int) -> str:
    """Why a vLLM engine's share is too small for its own weights and one sequence, if it is."""
    for phase in est.phases:
        if phase.engine_share is None:
            continue
        share = int(phase.engine_share * gpu_bytes)
        if phase.engine_floor > share:
            least = math.ceil(100 * phase.engine_floor / gpu_bytes) / 100  # round up
            return (f"rollout.gpu_memory_utilization {phase.engine_share} gives the vLLM engine "
                    f"{size(share)}, less than the {size(phase.engine_floor)} its weights and "
                    f"one full-length sequence's KV cache need; raise it to at least "
                    f"{least:.2f} (and make room for it beside the trainer)")
    return ""


# --- the submit-time check --------------------------------------------------------------------


def memory_violations(job: JobSpec, lines: Mapping[Loc, int]) -> list[FieldViolation]:
    """Spec errors for stages that cannot fit (and LoRA targets that match nothing)."""
    try:
        rows = memory_plan(job, checked_only=True)
    except Exception:  # a planner bug must not turn a submit into INTERNAL
        log.exception("the memory planner failed; the spec is not checked for memory")
        return []
    out = []
    for row in rows:
        loc: Loc = ("spec", "stages", row.stage)
        if row.status == "does not fit" and row.reason.startswith("rollout."):
            out.append(FieldViolation(f"{row.field}.rollout.gpu_memory_utilization", row.reason,
                                      line_of(dict(lines), (*loc, "rollout"))))
        if row.status == "does not fit" and (row.peak_bytes or 0) > (row.usable_bytes or 0):
            out.append(FieldViolation(row.field, _message(row), line_of(dict(lines), loc)))
        elif row.status == "unknown" and "target_modules" in row.reason:
            out.append(FieldViolation(f"{row.field}.lora.target_modules", row.reason,
                                      line_of(dict(lines), (*loc, "lora", "target_modules"))))
    return out


def _message(row: StageRow) -> str:
    est = row.estimate
    assert est is not None and row.peak_bytes is not None and row.gpu_bytes is not None
    parts = sorted([*est.resident, *_phase_parts(row)], key=lambda p: -p.device_bytes)[:3]
    largest = ", ".join(f"{p.name} {size(p.device_bytes)}" for p in parts)
    fixes = "; ".join(row.advice) if row.advice else "no single change is enough: combine them"
    return (f"does not fit: the {row.stage} stage needs about {size(row.peak_bytes)} per GPU at "
            f"its peak ({row.peak_phase}; {row.layout}, {row.devices}), but a GPU has "
            f"{size(row.gpu_bytes)} (resources.gpu_memory) of which {size(row.usable_bytes or 0)} "
            f"are usable after a {size(RUNTIME_RESERVE_BYTES)} runtime reserve. Largest terms: "
            f"{largest}. To fit, try: {fixes} (`saferlhf plan` shows every term)")


def _phase_parts(row: StageRow) -> list:
    est = row.estimate
    assert est is not None
    for phase in est.phases:
        if phase.name == row.peak_phase:
            return list(phase.parts)
    return []
