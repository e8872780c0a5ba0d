"""Repairs after a crash between two store writes (pure: decides, the loop applies).

The scheduler moves an attempt and its stage in separate transactions (attempt FAILED, then the
retry attempt, then the stage PENDING; stage SUCCEEDED, then the gates after it). A service killed
between two of them leaves a combination no tick produces on its own: a RUNNING stage whose
latest attempt already ended, a PENDING stage with a live attempt, a succeeded stage whose gates
were never evaluated. Without a repair such a job never moves again (or is declared `Stuck`);
with one, each is finished the way the interrupted tick would have finished it. The chaos suite
(tests/chaos/test_scheduler_crash_points.py) kills the scheduler after every single write of a
job's life and checks the job still ends exactly as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass

from saferlhf.service.state.types import Attempt, AttemptState, Gate, GateState, Stage

LIVE = (AttemptState.QUEUED, AttemptState.RUNNING)
ENDED = (AttemptState.SUCCEEDED, AttemptState.FAILED, AttemptState.CANCELLED)


@dataclass(frozen=True)
class Repair:
    """One fix. `action`: "state" (set the stage to `to`), "finish" (the latest attempt ended
    but its stage was not told: succeed it or decide the retry), "gates" (evaluate the gates of
    a done stage)."""

    action: str
    stage: Stage
    attempt: Attempt | None = None
    to: AttemptState | None = None


def latest_attempts(attempts: list[Attempt]) -> dict[str, Attempt]:
    latest: dict[str, Attempt] = {}
    for a in attempts:
        if a.stage_id not in latest or a.number > latest[a.stage_id].number:
            latest[a.stage_id] = a
    return latest


def repairs(stages: list[Stage], attempts: list[Attempt], gates: list[Gate]) -> list[Repair]:
    """What a crash left half-done in one (not cancelling) job, in plan order."""
    latest = latest_attempts(attempts)
    out: list[Repair] = []
    for stage in stages:
        attempt = latest.get(stage.id)
        if stage.state in LIVE:
            if attempt is None or attempt.state == AttemptState.PENDING:
                out.append(Repair("state", stage, attempt, AttemptState.PENDING))
            elif attempt.state in ENDED:
                out.append(Repair("finish", stage, attempt))
            elif attempt.state != stage.state:
                out.append(Repair("state", stage, attempt, attempt.state))
        elif stage.state == AttemptState.PENDING and attempt is not None \
                and attempt.state in LIVE:
            out.append(Repair("state", stage, attempt, attempt.state))
        elif stage.state in (AttemptState.SUCCEEDED, AttemptState.SKIPPED) and any(
                g.after_stage == stage.id and g.state == GateState.PENDING for g in gates):
            out.append(Repair("gates", stage, attempt))
    return out
