"""A call under a deadline: on time it returns, late it fails the attempt as retryable (exit 75)
without waiting for the stuck call, and a backstop ends a process whose exit is itself stuck.
The weight sync of the rollout engine goes through it (a fake slow engine stands in for vLLM)."""

from __future__ import annotations

import threading
import time

import pytest
from saferlhf.runners.common.deadline import DeadlineExceeded, call_with_deadline
from saferlhf.runners.common.errors import EXIT_TRANSIENT, TransientError
from saferlhf.runners.common.rollout_engine.base import RolloutEngine
from saferlhf.runners.common.rollout_engine.sync import sync_engine
from torch import nn


@pytest.fixture
def release():
    """An event a stuck call waits on; set at teardown so no thread outlives the test."""
    event = threading.Event()
    yield event
    event.set()


def never_exit(code: int) -> None:
    raise AssertionError(f"the backstop fired with {code}")


def test_a_call_that_finishes_in_time_returns_its_value():
    assert call_with_deadline(lambda: 41 + 1, 5.0, what="answer", hard_exit=never_exit) == 42


def test_the_calls_own_error_reaches_the_caller():
    def boom() -> None:
        raise ValueError("bad weights")

    with pytest.raises(ValueError, match="bad weights"):
        call_with_deadline(boom, 5.0, what="sync", hard_exit=never_exit)


def test_a_stuck_call_fails_at_its_deadline_as_a_retryable_error(release):
    start = time.monotonic()
    with pytest.raises(DeadlineExceeded) as err:
        call_with_deadline(lambda: release.wait(60), 0.2, what="weight sync", hint="raise it",
                           grace_seconds=60, hard_exit=lambda code: None)
    assert time.monotonic() - start < 5  # did not wait for the call
    assert isinstance(err.value, TransientError) and err.value.exit_code == EXIT_TRANSIENT == 75
    assert "weight sync did not finish within its deadline of 0.2 s" in str(err.value)
    assert "retried" in str(err.value) and "(raise it)" in str(err.value)


def test_the_backstop_exits_75_when_the_process_outlives_the_grace(release):
    fired: list[int] = []
    with pytest.raises(DeadlineExceeded):
        call_with_deadline(lambda: release.wait(60), 0.05, what="sync", grace_seconds=0.1,
                           hard_exit=fired.append)
    deadline = time.monotonic() + 5
    while not fired and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fired == [EXIT_TRANSIENT]


class FakeSlowEngine(RolloutEngine):
    """A stand-in for a vLLM engine whose weight load hangs (or takes `seconds`)."""

    name = "fake"
    needs_weight_sync = True

    def __init__(self, release: threading.Event, seconds: float = 60.0) -> None:
        self.release, self.seconds, self.received = release, seconds, 0

    @property
    def context_size(self):
        return None

    def generate(self, prompts, **kwargs):
        raise NotImplementedError

    def sync_weights(self, named_tensors) -> None:
        self.received = sum(1 for _ in named_tensors)
        self.release.wait(self.seconds)


def test_a_slow_weight_sync_fails_the_attempt_instead_of_hanging(release):
    engine = FakeSlowEngine(release)
    with pytest.raises(DeadlineExceeded, match="weight sync into the fake rollout engine") as err:
        sync_engine(engine, nn.Linear(2, 2), deadline_seconds=0.2, hard_exit=lambda code: None)
    assert "rollout.weight_sync_deadline_seconds" in str(err.value)


def test_a_sync_in_time_hands_every_weight_over_and_reports_its_seconds(release):
    release.set()
    engine = FakeSlowEngine(release, seconds=0.0)
    ticks = iter([10.0, 12.5])
    seconds = sync_engine(engine, nn.Linear(2, 2), deadline_seconds=5.0,
                          clock=lambda: next(ticks), hard_exit=never_exit)
    assert seconds == 2.5
    assert engine.received == 2  # weight and bias
