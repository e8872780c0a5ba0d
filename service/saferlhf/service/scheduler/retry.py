"""Retry decisions (kopf-style): the failure class says whether, the store's budget says how often,
exponential backoff says when. Budgets live in the store (`Stage.attempts`), never in child
objects — a Kubernetes Job runs with backoffLimit 0 (control_plane_anchors §6.2)."""

from __future__ import annotations

from dataclasses import dataclass

from saferlhf.service.state.types import FailureClass, Stage


def backoff_seconds(failures: int, base: float, cap: float) -> float:
    """Delay before the retry that follows failure number `failures` (1-based):
    min(cap, base · 2^(failures − 1)); 0 before any failure."""
    if failures < 1:
        return 0.0
    return float(min(cap, base * 2 ** (failures - 1)))


@dataclass(frozen=True)
class RetryDecision:
    retry: bool
    delay_seconds: float = 0.0
    reason: str = ""  # why not, or the failure class being retried


def decide(stage: Stage, failure: FailureClass) -> RetryDecision:
    """After attempt number `stage.attempts` of the current budget failed with `failure`."""
    if not failure.retryable:
        return RetryDecision(False, reason=f"{failure.value} failures are not retried")
    if stage.attempts >= stage.max_attempts:
        return RetryDecision(
            False, reason=f"retry budget spent: {stage.attempts} of {stage.max_attempts} attempts"
        )
    delay = backoff_seconds(stage.attempts, stage.backoff_seconds, stage.backoff_max_seconds)
    return RetryDecision(True, delay, failure.value)
