"""A stage's accelerator memory per process: what stays resident plus the largest working set.

    peak = resident model states + max over phases (training, rollout, scoring, …)

Resident: each network's model states (memory.py). Phases run one after another and free their
tensors in between: the training micro-batch (the largest trained network's activations; the
actor's with its PTX batch), the rollout (HF: KV cache and prefill; vLLM: the engine's share of
the GPU, the engine sleeping during training), and the experience pass (log-probs and scores of
the rollout without grad). Evaluate and collect hold one model at a time: each is its own phase.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from saferlhf.service.planning import memory as m
from saferlhf.service.planning.shapes import (
    largest_module_params,
    lm_params,
    lora_params,
    score_params,
)
from saferlhf.service.planning.workload import Network, Workload

GATHER = "ZeRO-3 gathered module"


@dataclass(frozen=True)
class Phase:
    name: str
    parts: tuple[m.Part, ...]
    engine_share: float | None = None  # vLLM reserves this share of the GPU in this phase
    engine_floor: int = 0  # what the engine must fit in its share: weights + one sequence's KV

    @property
    def device_bytes(self) -> int:
        return sum(p.device_bytes for p in self.parts)


@dataclass(frozen=True)
class StageEstimate:
    stage: str
    resident: tuple[m.Part, ...]
    phases: tuple[Phase, ...]
    processes_per_gpu: int = 1
    params: dict[str, tuple[int, int]] = field(default_factory=dict)  # label → (Φ, Ψ trained)

    @property
    def resident_bytes(self) -> int:
        return sum(p.device_bytes for p in self.resident)

    @property
    def host_bytes(self) -> int:
        """Offloaded states per process (host memory)."""
        return sum(p.host_bytes for p in self.resident)

    def phase_bytes(self, phase: Phase, gpu_bytes: int | None) -> int | None:
        """Device bytes per process while `phase` runs; None if it needs the unknown GPU size."""
        engine = 0
        if phase.engine_share is not None:
            if gpu_bytes is None:
                return None
            engine = int(phase.engine_share * gpu_bytes)
        return self.resident_bytes + phase.device_bytes + engine

    def peak_phase(self, gpu_bytes: int | None) -> tuple[Phase | None, int | None]:
        """The phase with the highest use and its bytes per GPU (processes sharing one GPU
        add up); bytes None when a vLLM share needs the GPU size."""
        peak: Phase | None = None
        most = self.resident_bytes
        for phase in self.phases:
            used = self.phase_bytes(phase, gpu_bytes)
            if used is None:
                return phase, None
            if used > most or peak is None:
                peak, most = phase, used
        return peak, most * self.processes_per_gpu


def network_params(net: Network) -> tuple[int, int]:
    """(Φ all parameters, Ψ trained ones) of a network, LoRA adapters included."""
    total = lm_params(net.shape) if net.head == "lm" else score_params(net.shape)
    if not net.trained:
        return total, 0
    if net.lora is None:
        return total, total
    adapters = lora_params(net.shape, net.lora)
    return total + adapters, adapters


def estimate(w: Workload) -> StageEstimate:
    """Every term of the stage's per-process memory (raises shapes.LoraTargetError)."""
    params = {net.label: network_params(net) for net in w.networks}
    gpus = w.resources.gpus_per_node
    per_gpu = math.ceil(w.resources.nproc_per_node / gpus) if gpus > 0 else 1
    if w.sequential:
        phases = tuple(_alone(w, net, params[net.label][0]) for net in w.networks)
        return StageEstimate(w.stage, (), phases, per_gpu, params)
    resident: list[m.Part] = []
    for net in w.networks:
        total, trained = params[net.label]
        largest = largest_module_params(net.shape)
        if net.trained:
            resident += m.trained_model_states(net.label, total, trained, largest, w.layout)
        else:
            resident += m.frozen_model_states(net.label, total, largest, w.layout)
    return StageEstimate(w.stage, _one_gather(resident), _phases(w), per_gpu, params)


def _one_gather(parts: list[m.Part]) -> tuple[m.Part, ...]:
    """One model runs at a time, so only the largest ZeRO-3 gathered module counts."""
    gathers = [p for p in parts if p.name.endswith(GATHER)]
    rest = [p for p in parts if not p.name.endswith(GATHER)]
    if gathers:
        rest.append(max(gathers, key=lambda p: p.device_bytes))
    return tuple(rest)


def _phases(w: Workload) -> tuple[Phase, ...]:
    e = w.layout.weight_bytes
    phases = []
    trained = [net for net in w.networks if net.trained]
    if trained and w.train_sequences:
        def act(net: Network) -> int:
            return m.training_activation_bytes(
                net.shape, head=net.head, sequences=w.train_sequences, tokens=w.train_tokens,
                e=e, checkpointing=w.checkpointing)
        sizes = {net.label: act(net) for net in trained}
        if w.ptx_sequences and "actor" in sizes:  # PTX backpropagates with the actor's loss
            sizes["actor"] += m.training_activation_bytes(
                w.networks[0].shape, head="lm", sequences=w.ptx_sequences, tokens=w.ptx_tokens,
                e=e, checkpointing=w.checkpointing)
        label = max(sizes, key=lambda k: sizes[k])
        phases.append(Phase("training", (m.Part(f"{label}: activations", sizes[label]),)))
    gen = w.generation
    if gen is not None:
        actor = w.networks[0].shape
        tokens = gen.prompt_tokens + gen.new_tokens
        if gen.engine == "vllm":
            phases.append(Phase("rollout", (), engine_share=gen.gpu_memory_utilization,
                                engine_floor=_engine_floor(w.networks[0], tokens)))
        else:
            phases.append(Phase("rollout", (
                m.Part("KV cache", m.kv_cache_bytes(actor, sequences=gen.sequences,
                                                    tokens=tokens, e=e)),
                m.Part("prefill", m.prefill_bytes(actor, sequences=gen.sequences,
                                                  tokens=gen.prompt_tokens, e=e)))))
        # Experience: log-probs of the rollout under actor and reference, without grad.
        head = (e + 8) * actor.vocab * tokens * gen.sequences
        block = m.prefill_bytes(actor, sequences=gen.sequences, tokens=tokens, e=e)
        phases.append(Phase("experience", (m.Part("log-probs (no grad)", head + block),)))
    return tuple(phases)


def _alone(w: Workload, net: Network, total: int) -> Phase:
    """Evaluate / collect: one fp32 model and its generation or scoring working set."""
    gen = w.generation
    assert gen is not None
    e = m.Layout(False, 0, 1, "fp32").weight_bytes
    tokens = gen.prompt_tokens + gen.new_tokens
    if net.head == "lm" and gen.engine == "vllm":
        return Phase(net.label, (), engine_share=gen.gpu_memory_utilization,
                     engine_floor=_engine_floor(net, tokens))
    parts = [m.Part("weights", e * total)]
    if net.head == "lm":
        parts += [m.Part("KV cache", m.kv_cache_bytes(net.shape, sequences=gen.sequences,
                                                      tokens=tokens, e=e)),
                  m.Part("prefill", m.prefill_bytes(net.shape, sequences=gen.sequences,
                                                    tokens=gen.prompt_tokens, e=e))]
    else:
        parts.append(m.Part("scoring", m.prefill_bytes(net.shape, sequences=gen.sequences,
                                                       tokens=tokens, e=e)))
    return Phase(net.label, tuple(parts))


def _engine_floor(net: Network, tokens: int) -> int:
    """The least a vLLM engine needs inside its share: the policy's weights in 16 bits and the KV
    cache of one full-length sequence (else vLLM refuses to start: no room for cache blocks)."""
    return 2 * network_params(net)[0] + m.kv_cache_bytes(net.shape, sequences=1, tokens=tokens,
                                                         e=2)
