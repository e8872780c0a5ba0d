"""What would make a stage fit: single changes to its workload, each re-estimated.

ZeRO-3, ZeRO-3 with every offload, gradient checkpointing, LoRA on every linear module, a
micro-batch of one, and the fewest nodes at which ZeRO-3 (alone, or with checkpointing and a
micro-batch of one) fits. Evaluate and collect load whole fp32 models, so only their batch can
shrink.
"""

from __future__ import annotations

from dataclasses import replace

from saferlhf.service.planning.estimate import estimate
from saferlhf.service.planning.memory import Layout, size
from saferlhf.service.planning.shapes import LoraInput, LoraTargetError
from saferlhf.service.planning.workload import Workload


def _peak(work: Workload, gpu_bytes: int) -> int | None:
    try:
        return estimate(work).peak_phase(gpu_bytes)[1]
    except LoraTargetError:
        return None


def advice(work: Workload, usable: int, gpu_bytes: int) -> tuple[str, ...]:
    """Changes that shrink the peak, each re-estimated, with their verdicts."""
    if work.sequential:
        return _sampler_advice(work, usable, gpu_bytes)
    lay = work.layout
    bits = lay.precision if lay.deepspeed else "bf16"
    zero3 = Layout(True, 3, lay.world_size, bits)
    options: list[tuple[str, Workload]] = []
    if lay.world_size > 1 and not (lay.deepspeed and lay.zero_stage == 3):
        options.append((f"deepspeed: {{zero_stage: 3, precision: {bits}}}",
                        replace(work, layout=zero3)))
    if not (lay.offload_params and lay.offload_optimizer):
        offload = replace(zero3, offload_params=True, offload_optimizer=True)
        options.append((f"deepspeed: {{zero_stage: 3, precision: {bits}, offload: all}}",
                        replace(work, layout=offload)))
    if work.train_sequences and not work.checkpointing:
        options.append(("backend.gradient_checkpointing: true",
                        replace(work, checkpointing=True)))
    if any(n.trained and n.lora is None for n in work.networks):
        options.append(("LoRA (r 16 on every linear module)", _with_lora(work)))
    small = micro_batch_one(work)
    if small is not work:
        options.append(("batch_size: 1", small))
    out = [_verdict(text, changed, usable, gpu_bytes) for text, changed in options]
    out.append(_more_gpus(work, usable, gpu_bytes, zero3, "ZeRO-3"))
    lean = replace(micro_batch_one(work), checkpointing=True)
    out.append(_more_gpus(lean, usable, gpu_bytes, zero3,
                          "ZeRO-3 + gradient checkpointing + batch_size 1"))
    return tuple(text for text in out if text)


def _verdict(text: str, work: Workload, usable: int, gpu_bytes: int) -> str:
    peak = _peak(work, gpu_bytes)
    if peak is None:
        return ""
    return f"{text} → {size(peak)} ({'fits' if peak <= usable else 'still too much'})"


def micro_batch_one(work: Workload) -> Workload:
    if work.train_sequences <= (2 if work.stage in ("reward", "cost") else 1):
        return work
    gen = work.generation
    return replace(work, train_sequences=2 if work.stage in ("reward", "cost") else 1,
                   ptx_sequences=min(work.ptx_sequences, 1),
                   generation=replace(gen, sequences=1) if gen is not None else None)


def _sampler_advice(work: Workload, usable: int, gpu_bytes: int) -> tuple[str, ...]:
    """Evaluate / collect load each model whole, in fp32: only the batch can shrink."""
    gen = work.generation
    assert gen is not None
    out = []
    if gen.sequences > 1:
        out.append(_verdict("batch_size: 1", replace(work, generation=replace(gen, sequences=1)),
                            usable, gpu_bytes))
    est = estimate(work)
    weights = max((p.device_bytes for ph in est.phases for p in ph.parts
                   if p.name.endswith("weights")), default=0)
    out.append(f"the {work.stage} runner loads each model whole in fp32 ({size(weights)} for "
               "the largest), so it needs a GPU with more memory than that")
    return tuple(text for text in out if text)


def _with_lora(work: Workload) -> Workload:
    lora = LoraInput(r=16, target_modules="all-linear")
    nets = tuple(replace(n, lora=lora) if n.trained and n.lora is None else n
                 for n in work.networks)
    if any(n.label == "actor" for n in nets):  # the reference becomes the adapter-less base
        nets = tuple(n for n in nets if n.label != "reference")
    return replace(work, networks=nets)


def _more_gpus(work: Workload, usable: int, gpu_bytes: int, zero3: Layout, how: str) -> str:
    """The fewest nodes (of this stage's GPUs per node) at which `how` fits."""
    r = work.resources
    per_node = max(r.gpus_per_node, 1)
    for nodes in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024):
        if nodes * per_node <= work.layout.world_size:
            continue
        layout = replace(zero3, world_size=nodes * per_node)
        resources = replace(r, nodes=nodes, nproc_per_node=per_node)
        peak = _peak(replace(work, layout=layout, resources=resources), gpu_bytes)
        if peak is not None and peak <= usable:
            gpus = f"{per_node} GPU{'s' if per_node > 1 else ''}"
            return f"{how} on {nodes} node{'s' if nodes > 1 else ''} × {gpus} → {size(peak)} (fits)"
    return ""
