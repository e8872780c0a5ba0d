"""Converters: every domain value survives domain → proto → domain unchanged."""

from __future__ import annotations

from saferlhf.service.api import convert
from saferlhf.service.controlplane import JobView, WatchUpdate
from saferlhf.service.state.types import (
    Attempt,
    AttemptState,
    FailureClass,
    Gate,
    GateState,
    Job,
    JobState,
    Stage,
    StoredEvent,
    Transition,
)

JOB = Job(id="j-1", name="beaver", project="safety", spec={"spec": {"rounds": {"count": 2}},
          "metadata": {"name": "beaver"}}, state=JobState.PAUSED, request_id="r-1",
          labels={"team": "a"}, created_at=1764230400.25, updated_at=1764230401.5,
          finished_at=None, message="gate awaiting approval", conditions={"LambdaPinned": "x"})
STAGE = Stage(id="r2/ppo_lag", job_id="j-1", round=2, kind="ppo_lag",
              depends_on=("r2/reward", "r2/cost"), state=AttemptState.RUNNING,
              config={"lambda_lr": 0.1, "epochs": 2}, output_dir="/a/r2/ppo_lag", attempts=2,
              skipped_with=None, progress=0.5, result={"train/lambda": 1.25})
ATTEMPT = Attempt(id="j-1/r2/ppo_lag/2", job_id="j-1", stage_id="r2/ppo_lag", number=2,
                  state=AttemptState.FAILED, handle="pid:42", exit_code=75,
                  failure=FailureClass.TRANSIENT, message="exit 75", created_at=10.0,
                  started_at=11.5, finished_at=None, last_event_at=12.0, not_before=40.0)
GATE = Gate(id="r1/eval/1", job_id="j-1", after_stage="r1/evaluate", metric="eval/harmful_rate",
            op="<=", value=0.1, on_fail="pause", state=GateState.AWAITING_APPROVAL,
            observed=0.25, message="0.25 > 0.1")


def test_every_job_state_round_trips_through_its_proto_enum():
    for state in JobState:
        assert convert.job_state_from_proto(convert.job_state_to_proto(state)) is state


def test_job_round_trips_with_optional_finish_time_unset_and_set():
    assert convert.job_from_proto(convert.job_to_proto(JOB)) == JOB
    finished = Job(**{**JOB.__dict__, "state": JobState.SUCCEEDED, "finished_at": 1764230500.0})
    assert convert.job_from_proto(convert.job_to_proto(finished)) == finished
    assert not convert.job_to_proto(JOB).HasField("finish_time")


def test_stage_attempt_gate_and_transition_round_trip():
    assert convert.stage_from_proto(convert.stage_to_proto(STAGE)) == STAGE
    skipped = Stage(**{**STAGE.__dict__, "skipped_with": "/models/sft",
                       "state": AttemptState.SKIPPED})
    assert convert.stage_from_proto(convert.stage_to_proto(skipped)) == skipped
    assert convert.attempt_from_proto(convert.attempt_to_proto(ATTEMPT)) == ATTEMPT
    assert convert.gate_from_proto(convert.gate_to_proto(GATE)) == GATE
    unobserved = Gate(**{**GATE.__dict__, "observed": None})
    assert convert.gate_from_proto(convert.gate_to_proto(unobserved)) == unobserved
    t = Transition(at=5.125, subject="gate:r1/eval/1", from_state="PENDING",
                   to_state="AWAITING_APPROVAL", reason="GateMissed", message="0.25 > 0.1")
    assert convert.transition_from_proto(convert.transition_to_proto(t)) == t


def test_an_attempts_stage_token_hash_never_goes_on_the_wire():
    secret = Attempt(**{**ATTEMPT.__dict__, "token_hash": "ab" * 32})
    assert "ab" * 32 not in str(convert.attempt_to_proto(secret))


def test_runner_event_round_trips_keeping_integers_integers():
    event = {"seq": 7, "attempt": 2, "time": "2026-11-27T10:00:00.123Z", "type": "metrics",
             "step": 40, "values": {"train/lambda": 1.31, "train/episode_cost": 0.22}}
    back = convert.runner_event_from_proto(convert.runner_event_to_proto(event))
    assert back == event
    assert isinstance(back["step"], int)


def test_job_view_round_trips_including_latest_metrics():
    view = JobView(job=JOB, stages=(STAGE,), attempts=(ATTEMPT,), gates=(GATE,),
                   transitions=(Transition(1.0, "job", "PENDING", "RUNNING"),),
                   latest_metrics={"r2/ppo_lag": {"train/lambda": 1.5, "train/cost": -0.25}})
    assert convert.job_view_from_proto(convert.job_view_to_proto(view)) == view


def test_watch_updates_round_trip_and_metric_events_carry_metric_points():
    event = StoredEvent(job_id="j-1", attempt_id="j-1/r2/ppo_lag/2", stage_id="r2/ppo_lag",
                        seq=3, type="metrics", time="2026-11-27T10:00:00.000Z",
                        payload={"attempt": 2, "step": 8, "values": {"train/lambda": 1.5,
                                                                     "train/cost": 0.5}},
                        cursor=17)
    msg = convert.watch_update_to_proto(WatchUpdate(cursor=17, kind="event", event=event))
    points = {(p.name, p.value, p.step, p.round) for p in msg.metric_points}
    assert points == {("train/lambda", 1.5, 8, 2), ("train/cost", 0.5, 8, 2)}
    assert convert.watch_update_from_proto(msg).event == event
    for update in (WatchUpdate(1, "job", job=JOB), WatchUpdate(2, "stage", stage=STAGE),
                   WatchUpdate(3, "gate", gate=GATE)):
        assert convert.watch_update_from_proto(convert.watch_update_to_proto(update)) == update
