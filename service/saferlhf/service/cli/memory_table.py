"""`saferlhf plan`: the memory plan as a table (text) or as data (JSON / YAML). Pure formatting."""

from __future__ import annotations

from typing import Any

from saferlhf.service.planning.estimate import StageEstimate
from saferlhf.service.planning.fit import RUNTIME_RESERVE_BYTES, StageRow
from saferlhf.service.planning.memory import Part, size

COLUMNS = ("stage", "devices", "layout", "parameters", "peak/GPU", "at", "GPU", "status")


def count(n: int) -> str:
    """1_300_000 → "1.3 M", 6_738_415_616 → "6.74 B"."""
    if n >= 10**9:
        return f"{n / 1e9:.2f} B"
    if n >= 10**6:
        return f"{n / 1e6:.1f} M"
    return f"{n / 1e3:.1f} k"


def _params(est: StageEstimate) -> str:
    total = sum(t for t, _ in est.params.values())
    trained = sum(p for _, p in est.params.values())
    text = count(total) + (f" in {len(est.params)} models" if len(est.params) > 1 else "")
    return text + (f", {count(trained)} trained" if trained and trained != total else "")


def _cells(row: StageRow) -> tuple[str, ...]:
    est = row.estimate
    if est is None:
        return (row.stage, row.devices or "—", row.layout or "—", "—", "—", "—", "—", row.status)
    peak = size(row.peak_bytes) if row.peak_bytes is not None else "?"
    gpu = size(row.gpu_bytes) if row.gpu_bytes is not None else "—"
    return (row.stage, row.devices, row.layout, _params(est), peak, row.peak_phase, gpu,
            row.status)


def plan_text(name: str, rows: list[StageRow]) -> str:
    """The table, then each stage's terms and, for a stage that does not fit, what would."""
    cells = [COLUMNS, *(_cells(r) for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    lines = [f"memory plan of {name}: estimates per GPU, the same in every round "
             "(formulas and their measured agreement: docs/running_on_gpus.md)", ""]
    lines += ["  ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)).rstrip()
              for cell in cells]
    for row in rows:
        lines += ["", f"{row.stage}: {row.status}" + (f" — {row.reason}" if row.reason else "")]
        if row.estimate is not None:
            lines += _details(row, row.estimate)
    return "\n".join(lines)


def _details(row: StageRow, est: StageEstimate) -> list[str]:
    lines = []
    groups: dict[str, list[Part]] = {}
    for part in est.resident:
        label, _, term = part.name.partition(": ")
        if not part.name.endswith("gathered module"):  # shown on its own line below
            groups.setdefault(label if term else "", []).append(part)
    for label, (total, trained) in est.params.items():
        state = "trained" if trained == total else f"{count(trained)} trained" if trained \
            else "frozen"
        terms = groups.get(label, [])
        held = ", ".join(_term(p) for p in terms)
        lines.append(f"  {label}: {count(total)} parameters, {state}" +
                     (f"; {held} = {_total(terms)}" if terms else ""))
    for part in est.resident:
        if part.name.endswith("gathered module"):
            lines.append(f"  {part.name} (one at a time): {size(part.device_bytes)}")
    if est.resident:
        host = f" (+ {size(est.host_bytes)} offloaded to host memory)" if est.host_bytes else ""
        lines.append(f"  resident: {size(est.resident_bytes)} per process{host}")
    for phase in est.phases:
        used = est.phase_bytes(phase, row.gpu_bytes)
        shown = [_term(p) for p in phase.parts]
        if phase.engine_share is not None:
            shown.append(f"vLLM engine {phase.engine_share:.0%} of the GPU")
        peak = size(used) if used is not None else "needs resources.gpu_memory"
        lines.append(f"  {phase.name}: {', '.join(shown)} → {peak}")
    if est.processes_per_gpu > 1:
        lines.append(f"  {est.processes_per_gpu} processes share each GPU: the peak is multiplied")
    if row.usable_bytes is not None and row.gpu_bytes is not None:
        lines.append(f"  usable: {size(row.usable_bytes)} ({size(row.gpu_bytes)} − "
                     f"{size(RUNTIME_RESERVE_BYTES)} runtime reserve)")
    lines += [f"  to fit: {advice}" for advice in row.advice]
    return lines


def _term(part: Part) -> str:
    name = part.name.partition(": ")[2] or part.name
    if part.host_bytes and not part.device_bytes:
        return f"{name} {size(part.host_bytes)} on host"
    return f"{name} {size(part.device_bytes)}"


def _total(parts: list[Part]) -> str:
    return size(sum(p.device_bytes for p in parts))


def plan_data(name: str, rows: list[StageRow]) -> dict[str, Any]:
    """Everything in the table, as plain data (bytes as integers)."""
    out = []
    for row in rows:
        item: dict[str, Any] = {
            "stage": row.stage, "status": row.status, "devices": row.devices,
            "layout": row.layout, "peak_bytes_per_gpu": row.peak_bytes,
            "peak_phase": row.peak_phase or None, "gpu_memory_bytes": row.gpu_bytes,
            "usable_bytes": row.usable_bytes, "reason": row.reason or None,
            "advice": list(row.advice),
        }
        est = row.estimate
        if est is not None:
            item["models"] = {label: {"parameters": total, "trained_parameters": trained}
                              for label, (total, trained) in est.params.items()}
            item["resident"] = [_part_data(p) for p in est.resident]
            item["phases"] = [{"name": ph.name, "parts": [_part_data(p) for p in ph.parts],
                               "vllm_gpu_share": ph.engine_share,
                               "device_bytes": est.phase_bytes(ph, row.gpu_bytes)}
                              for ph in est.phases]
            item["host_bytes"] = est.host_bytes
            item["processes_per_gpu"] = est.processes_per_gpu
        out.append(item)
    return {"job": name, "runtime_reserve_bytes": RUNTIME_RESERVE_BYTES, "stages": out}


def _part_data(part: Part) -> dict[str, Any]:
    return {"name": part.name, "device_bytes": part.device_bytes, "host_bytes": part.host_bytes}
