"""The reconcile loop with a fake clock and a fake executor: nothing sleeps, time jumps."""

from __future__ import annotations

from pathlib import Path

from saferlhf.service.state.types import AttemptState, FailureClass, Gate, GateState, JobState

from tests.unit.service.scheduler.helpers import add_job, make_app, succeed


def states(app, job_id="j-1") -> dict[str, str]:
    return {s.id: s.state.value for s in app.store.list_stages(job_id)}


def test_stages_run_in_dependency_order_and_reward_and_cost_run_in_parallel(tmp_path: Path):
    app, ex, clock = make_app(tmp_path, max_concurrent_stages=2)
    add_job(app, tmp_path)
    app.scheduler.tick()
    assert app.store.get_job("j-1").state == JobState.RUNNING
    assert ex.live() == ["r1/sft"]
    app.scheduler.tick()
    assert states(app)["r1/sft"] == "RUNNING"
    succeed(app, ex, "r1/sft")
    assert sorted(ex.live()) == ["r1/cost", "r1/reward"]  # RM ∥ CM
    succeed(app, ex, "r1/reward")
    assert ex.live() == ["r1/cost"]  # ppo_lag waits for both
    succeed(app, ex, "r1/cost")
    succeed(app, ex, "r1/ppo_lag")
    succeed(app, ex, "r1/evaluate")
    job = app.store.get_job("j-1")
    assert job.state == JobState.SUCCEEDED and job.finished_at == clock()
    assert set(states(app).values()) == {"SUCCEEDED"}
    assert app.metrics.registry.get_sample_value(
        "saferlhf_stage_attempts_total", {"kind": "sft", "outcome": "succeeded"}) == 1.0


def test_the_concurrency_cap_bounds_running_attempts_across_jobs(tmp_path: Path):
    app, ex, _ = make_app(tmp_path, max_concurrent_stages=1)
    add_job(app, tmp_path, job_id="j-1")
    add_job(app, tmp_path, job_id="j-2")
    app.scheduler.tick()
    assert ex.live() == ["r1/sft"] and len(ex.submitted) == 1
    ex.finish("r1/sft", 0)  # j-1's sft
    app.scheduler.tick()
    assert len(ex.live()) == 1 and len(ex.submitted) == 2


def test_transient_failures_are_retried_with_exponential_backoff_counted_in_the_store(
        tmp_path: Path):
    app, ex, clock = make_app(tmp_path)
    add_job(app, tmp_path, max_attempts=3, backoff_seconds=30)
    app.scheduler.tick()
    ex.finish("r1/sft", 75)
    app.scheduler.tick()
    stage = app.store.get_stage("j-1", "r1/sft")
    assert stage.state == AttemptState.PENDING and stage.attempts == 2
    attempts = app.store.list_attempts("j-1")
    assert [(a.number, a.state, a.failure) for a in attempts] == [
        (1, AttemptState.FAILED, FailureClass.TRANSIENT), (2, AttemptState.PENDING,
                                                            FailureClass.NONE)]
    assert attempts[1].not_before == clock() + 30
    clock.advance(29)
    app.scheduler.tick()
    assert len(ex.submitted) == 1  # still backing off
    clock.advance(1)
    app.scheduler.tick()
    assert len(ex.submitted) == 2 and ex.run_of("r1/sft").spec.attempt == 2
    ex.finish("r1/sft", 75)
    app.scheduler.tick()
    assert app.store.list_attempts("j-1")[-1].not_before == clock() + 60  # doubled
    clock.advance(60)
    app.scheduler.tick()
    ex.finish("r1/sft", 75)
    app.scheduler.tick()  # third failure: budget of 3 spent
    assert app.store.get_stage("j-1", "r1/sft").state == AttemptState.FAILED
    job = app.store.get_job("j-1")
    assert job.state == JobState.FAILED and "retry budget spent: 3 of 3" in job.message
    assert app.metrics.registry.get_sample_value(
        "saferlhf_stage_retries_total", {"kind": "sft", "reason": "TRANSIENT"}) == 2.0


def test_a_restarted_scheduler_keeps_the_stored_retry_budget(tmp_path: Path):
    app, ex, clock = make_app(tmp_path)
    add_job(app, tmp_path, max_attempts=2, backoff_seconds=1)
    app.scheduler.tick()
    ex.finish("r1/sft", 75)
    app.scheduler.tick()
    app2, _, _ = make_app(tmp_path, executor=ex, clock=clock)  # a new process, same store
    clock.advance(5)
    app2.scheduler.tick()
    ex.finish("r1/sft", 75)
    app2.scheduler.tick()
    assert app2.store.get_job("j-1").state == JobState.FAILED
    assert len(ex.submitted) == 2


def test_an_invalid_config_is_never_retried(tmp_path: Path):
    app, ex, _ = make_app(tmp_path)
    add_job(app, tmp_path, max_attempts=5)
    app.scheduler.tick()
    ex.finish("r1/sft", 2)
    app.scheduler.tick()
    assert len(ex.submitted) == 1
    attempt = app.store.list_attempts("j-1")[0]
    assert attempt.failure == FailureClass.INVALID and attempt.exit_code == 2
    job = app.store.get_job("j-1")
    assert job.state == JobState.FAILED and "INVALID failures are not retried" in job.message


def test_a_silent_attempt_is_hung_cancelled_and_retried(tmp_path: Path):
    app, ex, clock = make_app(tmp_path)
    add_job(app, tmp_path, stall_minutes=5, backoff_seconds=10)
    app.scheduler.tick()
    app.scheduler.tick()  # RUNNING, started now
    clock.advance(4 * 60)
    ex.emit("r1/sft", "progress", step=1, total_steps=10)
    app.report_events(ex.run_of("r1/sft").spec.attempt_id,
                      ex.run_of("r1/sft").spec.env["SAFERLHF_STAGE_TOKEN"],
                      [{"seq": 1, "attempt": 1, "type": "progress", "step": 1,
                        "total_steps": 10}])
    clock.advance(4 * 60)  # 8 minutes after start, 4 after the last event: alive
    app.scheduler.tick()
    assert ex.run_of("r1/sft").cancels == []
    clock.advance(2 * 60)  # 6 minutes of silence
    app.scheduler.tick()
    assert ex.run_of("r1/sft").cancels == [10.0]  # SIGTERM with the grace
    app.scheduler.tick()
    first = app.store.list_attempts("j-1")[0]
    assert first.failure == FailureClass.HUNG and "no event for 5 minutes" in first.message
    clock.advance(10)
    app.scheduler.tick()
    assert ex.run_of("r1/sft").spec.attempt == 2


def test_a_failing_gate_fails_the_job(tmp_path: Path):
    app, ex, _ = make_app(tmp_path)
    gate = Gate("r1/cost/0", "", "r1/cost", "eval/accuracy_sign", ">=", 0.75)
    add_job(app, tmp_path, gates=(gate,))
    app.scheduler.tick()
    succeed(app, ex, "r1/sft")
    succeed(app, ex, "r1/reward")
    ex.finish("r1/cost", 0, result={"eval/accuracy_sign": 0.6})
    app.scheduler.tick()
    g = app.store.list_gates("j-1")[0]
    assert g.state == GateState.FAILED and g.observed == 0.6
    job = app.store.get_job("j-1")
    assert job.state == JobState.FAILED
    assert "eval/accuracy_sign = 0.6, expected >= 0.75" in job.message
    assert "r1/ppo_lag" not in ex.live()


def test_a_passing_gate_lets_the_next_stage_start(tmp_path: Path):
    app, ex, _ = make_app(tmp_path)
    add_job(app, tmp_path, gates=(Gate("g", "", "r1/cost", "eval/accuracy_sign", ">=", 0.75),))
    app.scheduler.tick()
    succeed(app, ex, "r1/sft")
    succeed(app, ex, "r1/reward")
    succeed(app, ex, "r1/cost", result={"eval/accuracy_sign": 0.9})
    assert app.store.list_gates("j-1")[0].state == GateState.PASSED
    assert ex.live() == ["r1/ppo_lag"]


def test_a_pause_gate_waits_for_approval(tmp_path: Path):
    app, ex, _ = make_app(tmp_path)
    add_job(app, tmp_path, gates=(
        Gate("r1/evaluate/0", "", "r1/evaluate", "eval/harmful_rate", "<=", 0.1, "pause"),))
    app.scheduler.tick()
    for s in ("r1/sft", "r1/reward", "r1/cost", "r1/ppo_lag"):
        succeed(app, ex, s)
    succeed(app, ex, "r1/evaluate", result={"eval/harmful_rate": 0.3})
    job = app.store.get_job("j-1")
    assert job.state == JobState.PAUSED and job.message.startswith("gate r1/evaluate/0")
    app.scheduler.tick()
    assert app.store.get_job("j-1").state == JobState.PAUSED  # stays paused
    gate = app.approve_gate("j-1", "r1/evaluate/0", approve=True, comment="looked at samples")
    assert gate.state == GateState.APPROVED and gate.message == "looked at samples"
    app.scheduler.tick()
    assert app.store.get_job("j-1").state == JobState.SUCCEEDED


def test_a_rejected_gate_fails_the_job(tmp_path: Path):
    app, ex, _ = make_app(tmp_path)
    add_job(app, tmp_path, gates=(Gate("g", "", "r1/sft", "eval/accuracy", ">=", 0.9, "pause"),))
    app.scheduler.tick()
    succeed(app, ex, "r1/sft", result={"eval/accuracy": 0.5})
    assert app.store.get_job("j-1").state == JobState.PAUSED
    app.approve_gate("j-1", "g", approve=False)
    app.scheduler.tick()
    job = app.store.get_job("j-1")
    assert job.state == JobState.FAILED and job.message.startswith("gate g")
    assert [t.reason for t in app.get_job("j-1").transitions if t.subject == "job"][-1] == \
        "GateRejected"


def test_cancel_stops_running_attempts_and_cancels_the_rest(tmp_path: Path):
    app, ex, _ = make_app(tmp_path, cancel_grace_seconds=7)
    ex.exit_on_cancel = False
    add_job(app, tmp_path)
    app.scheduler.tick()
    app.cancel_job("j-1", "changed my mind")
    assert app.store.get_job("j-1").state == JobState.CANCELLING
    app.scheduler.tick()
    assert ex.run_of("r1/sft").cancels == [7]
    app.scheduler.tick()
    assert ex.run_of("r1/sft").cancels == [7]  # SIGTERM once; the executor SIGKILLs later
    assert app.store.get_job("j-1").state == JobState.CANCELLING
    ex.finish("r1/sft", -9)
    app.scheduler.tick()
    job = app.store.get_job("j-1")
    assert job.state == JobState.CANCELLED and job.message == "changed my mind"
    assert set(states(app).values()) == {"CANCELLED"}


def test_retry_job_reruns_only_the_failed_stage(tmp_path: Path):
    app, ex, _ = make_app(tmp_path, max_concurrent_stages=2)
    add_job(app, tmp_path, max_attempts=1)
    app.scheduler.tick()
    succeed(app, ex, "r1/sft")
    ex.finish("r1/reward", 0)
    ex.finish("r1/cost", 2)
    app.scheduler.tick()
    assert app.store.get_job("j-1").state == JobState.FAILED
    job = app.retry_job("j-1")
    assert job.state == JobState.RUNNING and job.finished_at is None
    app.scheduler.tick()
    assert ex.live() == ["r1/cost"] and ex.run_of("r1/cost").spec.attempt == 2
    assert [a for a in ex.submitted if "/r1/sft/" in a] == ["j-1/r1/sft/1"]
    succeed(app, ex, "r1/cost")
    succeed(app, ex, "r1/ppo_lag")
    succeed(app, ex, "r1/evaluate")
    assert app.store.get_job("j-1").state == JobState.SUCCEEDED


def test_a_skipped_stage_counts_as_done_without_running(tmp_path: Path):
    app, ex, _ = make_app(tmp_path)
    add_job(app, tmp_path, skipped={"r1/sft": "/models/my-sft"})
    app.scheduler.tick()
    assert states(app)["r1/sft"] == "SKIPPED"
    assert ex.live() == ["r1/reward"]


def test_a_submit_error_is_a_transient_failure_that_is_retried(tmp_path: Path):
    app, ex, clock = make_app(tmp_path)
    add_job(app, tmp_path, backoff_seconds=5)
    ex.fail_submit = RuntimeError("API server unavailable")
    app.scheduler.tick()
    first = app.store.list_attempts("j-1")[0]
    assert first.failure == FailureClass.TRANSIENT and "API server unavailable" in first.message
    ex.fail_submit = None
    clock.advance(5)
    app.scheduler.tick()
    assert ex.live() == ["r1/sft"] and ex.run_of("r1/sft").spec.attempt == 2


def test_every_transition_is_stored_with_time_and_reason(tmp_path: Path):
    app, ex, clock = make_app(tmp_path)
    add_job(app, tmp_path)
    app.scheduler.tick()
    clock.advance(3)
    ex.finish("r1/sft", 75)
    app.scheduler.tick()
    ts = app.get_job("j-1").transitions
    sft = [(t.from_state, t.to_state, t.reason) for t in ts if t.subject == "r1/sft"]
    assert sft == [("PENDING", "QUEUED", "Submitted"), ("QUEUED", "PENDING", "RetryTransient")]
    assert all(t.at > 0 for t in ts)
    assert [t.at for t in ts] == sorted(t.at for t in ts)


def test_events_in_the_file_keep_an_attempt_alive_without_a_stream(tmp_path: Path):
    app, ex, clock = make_app(tmp_path)
    add_job(app, tmp_path, stall_minutes=5)
    app.scheduler.tick()
    app.scheduler.tick()
    for _ in range(3):
        clock.advance(4 * 60)
        ex.emit("r1/sft", "progress", step=1, total_steps=10)  # written, never streamed
        app.scheduler.tick()
    assert ex.run_of("r1/sft").cancels == []
    assert app.store.get_stage("j-1", "r1/sft").progress == 0.1


def test_an_attempt_past_its_timeout_is_cancelled_and_retried_even_if_it_exits_cleanly(
        tmp_path: Path):
    app, ex, clock = make_app(tmp_path, cancel_grace_seconds=30)
    ex.exit_on_cancel = False
    add_job(app, tmp_path, backoff_seconds=1)
    app.store.update_stage("j-1", "r1/sft", at=clock(), timeout_minutes=10)
    app.scheduler.tick()
    app.scheduler.tick()  # RUNNING
    clock.advance(9 * 60)
    ex.emit("r1/sft", "progress", step=1, total_steps=10)
    app.scheduler.tick()
    assert ex.run_of("r1/sft").cancels == []
    clock.advance(2 * 60)
    app.scheduler.tick()
    assert ex.run_of("r1/sft").cancels == [30]
    clock.advance(30)
    app.scheduler.tick()
    assert ex.run_of("r1/sft").cancels == [30, 30]  # repeated once the grace has passed
    ex.finish("r1/sft", 0)  # checkpointed and exited 0 on SIGTERM
    app.scheduler.tick()
    first = app.store.list_attempts("j-1")[0]
    assert (first.state, first.failure) == (AttemptState.FAILED, FailureClass.DEADLINE)
    assert app.store.get_stage("j-1", "r1/sft").state == AttemptState.PENDING


def test_a_plan_whose_dependencies_can_never_be_met_fails_instead_of_hanging(tmp_path: Path):
    app, ex, _ = make_app(tmp_path)
    add_job(app, tmp_path, pipeline=(("r1/sft", "sft", ()), ("r1/reward", "reward", ("r1/x",))))
    app.scheduler.tick()
    succeed(app, ex, "r1/sft")
    job = app.store.get_job("j-1")
    assert job.state == JobState.FAILED and job.message == \
        "stages that can never start: r1/reward"


def test_a_stage_backing_off_is_not_stuck(tmp_path: Path):
    app, ex, clock = make_app(tmp_path)
    add_job(app, tmp_path, backoff_seconds=300)
    app.scheduler.tick()
    ex.finish("r1/sft", 75)
    app.scheduler.tick()
    app.scheduler.tick()
    assert app.store.get_job("j-1").state == JobState.RUNNING
