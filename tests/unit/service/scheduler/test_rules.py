"""The scheduler's pure rules: backoff, retry decisions, gate comparisons, stall detection."""

from __future__ import annotations

import pytest
from saferlhf.service.scheduler.gates import compare, evaluate
from saferlhf.service.scheduler.retry import backoff_seconds, decide
from saferlhf.service.scheduler.stall import is_hung, silent_seconds
from saferlhf.service.state.types import Attempt, AttemptState, FailureClass, Gate, GateState, Stage


def test_backoff_doubles_from_the_base_up_to_the_cap() -> None:
    assert [backoff_seconds(n, 30, 200) for n in range(5)] == [0, 30, 60, 120, 200]


@pytest.mark.parametrize(("failure", "retried"), [
    (FailureClass.TRANSIENT, True), (FailureClass.OOM, True), (FailureClass.KILLED, True),
    (FailureClass.HUNG, True), (FailureClass.UNKNOWN, True), (FailureClass.INVALID, False),
    (FailureClass.IMAGE_PULL, False)])
def test_only_retryable_failures_are_retried(failure: FailureClass, retried: bool) -> None:
    stage = Stage("r1/sft", "j", 1, "sft", attempts=1, max_attempts=3, backoff_seconds=10)
    decision = decide(stage, failure)
    assert decision.retry is retried
    if retried:
        assert decision.delay_seconds == 10


def test_the_budget_counts_attempts_made() -> None:
    stage = Stage("r1/sft", "j", 1, "sft", attempts=3, max_attempts=3)
    decision = decide(stage, FailureClass.TRANSIENT)
    assert not decision.retry and "3 of 3" in decision.reason


def test_gate_operators() -> None:
    assert compare(0.8, ">=", 0.75) and not compare(0.7, ">=", 0.75)
    assert compare(0.1, "<=", 0.1) and compare(1, "!=", 2) and compare(2, "==", 2)
    with pytest.raises(ValueError, match="unknown gate operator"):
        compare(1, "=>", 2)


def test_gates_read_the_result_first_then_the_last_metric() -> None:
    gate = Gate("g", "j", "r1/cost", "eval/accuracy_sign", ">=", 0.75)
    assert evaluate(gate, {"eval/accuracy_sign": 0.9}, {"eval/accuracy_sign": 0.1}).state == \
        GateState.PASSED
    assert evaluate(gate, {}, {"eval/accuracy_sign": 0.8}).observed == 0.8
    missing = evaluate(gate, {}, {})
    assert missing.state == GateState.FAILED and "did not report" in missing.message
    pause = Gate("g", "j", "r1/cost", "m", "<", 0.1, on_fail="pause")
    assert evaluate(pause, {"m": 0.5}, {}).state == GateState.AWAITING_APPROVAL


def test_stall_counts_from_the_last_sign_of_life() -> None:
    a = Attempt("a", "j", "r1/sft", 1, state=AttemptState.RUNNING, started_at=100.0,
                last_event_at=400.0)
    assert silent_seconds(a, 500.0) == 100.0
    assert not is_hung(a, 400.0 + 300.0, stall_minutes=5)
    assert is_hung(a, 400.0 + 301.0, stall_minutes=5)
    queued = Attempt("a", "j", "r1/sft", 1, state=AttemptState.QUEUED, started_at=0.0)
    assert not is_hung(queued, 10_000.0, stall_minutes=1)  # waiting in a queue is not a hang


def test_a_pending_stage_whose_attempt_is_live_is_not_launched_again():
    """A crash between storing the attempt QUEUED and its stage QUEUED leaves this pair; the
    stage must wait for its attempt (the reconcile repair syncs its state), never get a second."""
    from saferlhf.service.scheduler.launch import ready_stages


    stage = Stage(id="r1/sft", job_id="j", round=1, kind="sft")
    live = Attempt(id="j/r1/sft/1", job_id="j", stage_id="r1/sft", number=1,
                   state=AttemptState.QUEUED, handle="h")
    assert ready_stages([stage], [], [live], now=0.0) == []
    assert ready_stages([stage], [], [], now=0.0) == [(stage, None)]
