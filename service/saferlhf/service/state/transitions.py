"""Which state changes are allowed (DESIGN §7). Pure: the scheduler and the App ask here before
they write; the store records whatever they write together with its `Transition`.

Job:     PENDING → RUNNING → SUCCEEDED | FAILED | CANCELLED; RUNNING ⇄ PAUSED;
         any live state → CANCELLING → CANCELLED; FAILED | CANCELLED → RUNNING (RetryJob).
Attempt: PENDING → QUEUED → RUNNING → SUCCEEDED | FAILED | CANCELLED; PENDING → SKIPPED;
         a stage goes back to PENDING when it is retried.
"""

from __future__ import annotations

from saferlhf.service.errors import Conflict
from saferlhf.service.state.types import AttemptState, GateState, JobState

_J = JobState
JOB_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    _J.PENDING: frozenset({_J.RUNNING, _J.CANCELLING, _J.CANCELLED, _J.FAILED}),
    _J.RUNNING: frozenset({_J.PAUSED, _J.CANCELLING, _J.SUCCEEDED, _J.FAILED}),
    _J.PAUSED: frozenset({_J.RUNNING, _J.CANCELLING, _J.FAILED}),
    _J.CANCELLING: frozenset({_J.CANCELLED}),
    _J.SUCCEEDED: frozenset(),
    _J.FAILED: frozenset({_J.RUNNING}),  # RetryJob
    _J.CANCELLED: frozenset({_J.RUNNING}),  # RetryJob
}

_A = AttemptState
STAGE_TRANSITIONS: dict[AttemptState, frozenset[AttemptState]] = {
    _A.PENDING: frozenset({_A.QUEUED, _A.RUNNING, _A.SKIPPED, _A.CANCELLED, _A.FAILED}),
    _A.QUEUED: frozenset({_A.RUNNING, _A.SUCCEEDED, _A.FAILED, _A.CANCELLED, _A.PENDING}),
    _A.RUNNING: frozenset({_A.SUCCEEDED, _A.FAILED, _A.CANCELLED, _A.PENDING}),
    _A.SUCCEEDED: frozenset({_A.PENDING}),  # a failed gate's stage re-run by RetryJob
    _A.FAILED: frozenset({_A.PENDING}),  # retried
    _A.CANCELLED: frozenset({_A.PENDING}),  # RetryJob after a cancel
    _A.SKIPPED: frozenset(),
}

_G = GateState
GATE_TRANSITIONS: dict[GateState, frozenset[GateState]] = {
    _G.PENDING: frozenset({_G.PASSED, _G.FAILED, _G.AWAITING_APPROVAL, _G.ESCALATED}),
    _G.AWAITING_APPROVAL: frozenset({_G.APPROVED, _G.REJECTED}),
    _G.PASSED: frozenset({_G.PENDING}),
    _G.FAILED: frozenset({_G.PENDING}),
    _G.REJECTED: frozenset({_G.PENDING}),
    _G.APPROVED: frozenset({_G.PENDING}),
    _G.ESCALATED: frozenset({_G.PENDING}),
}

# Gates that let their stage's dependents start. An ESCALATED gate opens the escalation branch;
# a PASSED `escalate` gate instead makes that branch not needed (scheduler.launch.not_needed).
GATE_OPEN = frozenset({GateState.PASSED, GateState.APPROVED, GateState.ESCALATED})


def can_move_job(from_state: JobState, to_state: JobState) -> bool:
    return to_state == from_state or to_state in JOB_TRANSITIONS[from_state]


def check_job(from_state: JobState, to_state: JobState, what: str = "job") -> None:
    """Raise Conflict ("expected X, got Y") unless the job may move to `to_state`."""
    if not can_move_job(from_state, to_state):
        allowed = sorted(s for s, targets in JOB_TRANSITIONS.items() if to_state in targets)
        raise Conflict(
            f"{what} is {from_state.value}; it can become {to_state.value} only from "
            + (" or ".join(allowed) if allowed else "no state")
        )


def can_move_stage(from_state: AttemptState, to_state: AttemptState) -> bool:
    return to_state == from_state or to_state in STAGE_TRANSITIONS[from_state]


def can_move_gate(from_state: GateState, to_state: GateState) -> bool:
    return to_state == from_state or to_state in GATE_TRANSITIONS[from_state]

