"""Stall detection: a running attempt that reported no event for N minutes is HUNG (an NCCL hang
shows up as silence long before the 2-hour watchdog, control_plane_anchors §6.10); one running
longer than its stage's `timeout_minutes` is past its DEADLINE."""

from __future__ import annotations

from saferlhf.service.state.types import Attempt, AttemptState


def silent_seconds(attempt: Attempt, now: float) -> float | None:
    """Seconds since the attempt's last sign of life (last event, else its start)."""
    if attempt.state != AttemptState.RUNNING:
        return None
    marks = [t for t in (attempt.last_event_at, attempt.started_at) if t is not None]
    if not marks:
        return None
    return now - max(marks)


def is_hung(attempt: Attempt, now: float, stall_minutes: float) -> bool:
    silent = silent_seconds(attempt, now)
    return silent is not None and silent > stall_minutes * 60.0


def past_deadline(attempt: Attempt, now: float, timeout_minutes: float | None) -> bool:
    """Running for longer than `timeout_minutes` (None: no deadline)."""
    if timeout_minutes is None or attempt.state != AttemptState.RUNNING:
        return False
    return attempt.started_at is not None and now - attempt.started_at > timeout_minutes * 60.0
