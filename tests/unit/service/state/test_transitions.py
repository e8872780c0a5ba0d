"""Allowed state changes (DESIGN §7)."""

from __future__ import annotations

import pytest
from saferlhf.service.errors import Conflict
from saferlhf.service.state.transitions import (
    JOB_TRANSITIONS,
    can_move_gate,
    can_move_job,
    can_move_stage,
    check_job,
)
from saferlhf.service.state.types import AttemptState, GateState, JobState


def test_the_job_lifecycle_of_the_design_is_allowed() -> None:
    J = JobState
    for a, b in [(J.PENDING, J.RUNNING), (J.RUNNING, J.SUCCEEDED), (J.RUNNING, J.FAILED),
                 (J.RUNNING, J.PAUSED), (J.PAUSED, J.RUNNING), (J.RUNNING, J.CANCELLING),
                 (J.CANCELLING, J.CANCELLED), (J.FAILED, J.RUNNING)]:
        assert can_move_job(a, b), (a, b)


def test_terminal_jobs_only_leave_through_retry() -> None:
    assert JOB_TRANSITIONS[JobState.SUCCEEDED] == frozenset()
    assert not can_move_job(JobState.SUCCEEDED, JobState.RUNNING)
    assert not can_move_job(JobState.CANCELLING, JobState.RUNNING)
    assert not can_move_job(JobState.PENDING, JobState.SUCCEEDED)


def test_a_refused_job_move_says_from_where_it_would_be_allowed() -> None:
    with pytest.raises(Conflict, match="SUCCEEDED; it can become CANCELLING only from "):
        check_job(JobState.SUCCEEDED, JobState.CANCELLING)
    check_job(JobState.RUNNING, JobState.RUNNING)  # staying put is fine


def test_stage_and_gate_moves() -> None:
    A, G = AttemptState, GateState
    assert can_move_stage(A.PENDING, A.QUEUED) and can_move_stage(A.FAILED, A.PENDING)
    assert not can_move_stage(A.SKIPPED, A.PENDING)
    assert not can_move_stage(A.SUCCEEDED, A.FAILED)
    assert can_move_gate(G.AWAITING_APPROVAL, G.APPROVED)
    assert not can_move_gate(G.PASSED, G.APPROVED)
