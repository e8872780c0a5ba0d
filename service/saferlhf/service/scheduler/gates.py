"""Gates between stages: compare a metric the stage reported with a bound (DESIGN §4)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from saferlhf.service.state.types import ESCALATE, Gate, GateState

OPS = ("<", "<=", ">", ">=", "==", "!=")


def compare(observed: float, op: str, value: float) -> bool:
    """observed <op> value, for op in < <= > >= == !=."""
    table = {
        "<": observed < value, "<=": observed <= value, ">": observed > value,
        ">=": observed >= value, "==": observed == value, "!=": observed != value,
    }
    if op not in table:
        raise ValueError(f"unknown gate operator {op!r}; expected one of {OPS}")
    return table[op]


@dataclass(frozen=True)
class GateOutcome:
    state: GateState  # PASSED, FAILED or AWAITING_APPROVAL
    observed: float | None
    message: str


def observe(metric: str, result: dict[str, Any], latest: dict[str, float]) -> float | None:
    """The stage's final value of `metric`: result.json first, then its last metric event."""
    for source in (result, latest):
        value = source.get(metric)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def evaluate(gate: Gate, result: dict[str, Any], latest: dict[str, float]) -> GateOutcome:
    """PASSED when the metric meets the condition; otherwise FAILED, AWAITING_APPROVAL (`pause`)
    or ESCALATED (`escalate`: the escalation branch runs). A metric the stage never reported
    fails even an `escalate` gate: there is nothing to decide on."""
    observed = observe(gate.metric, result, latest)
    closed = {"pause": GateState.AWAITING_APPROVAL, ESCALATE: GateState.ESCALATED}.get(
        gate.on_fail, GateState.FAILED)
    if observed is None or math.isnan(observed):
        missing = GateState.FAILED if gate.on_fail == ESCALATE else closed
        return GateOutcome(missing, None, f"{gate.after_stage} did not report {gate.metric}")
    if compare(observed, gate.op, gate.value):
        return GateOutcome(
            GateState.PASSED, observed, f"{gate.metric} = {observed:g} {gate.op} {gate.value:g}"
        )
    return GateOutcome(
        closed, observed, f"{gate.metric} = {observed:g}, expected {gate.op} {gate.value:g}"
    )
