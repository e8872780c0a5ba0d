"""Restart recovery: a new App over the same store adopts running attempts and fills event gaps
from events.jsonl, so a killed service loses no event and doubles none."""

from __future__ import annotations

import json
from pathlib import Path

from saferlhf.runners.common.events import read_events
from saferlhf.service.state.types import AttemptState, JobState

from tests.unit.service.scheduler.helpers import add_job, make_app


def test_a_new_app_adopts_running_attempts_and_fills_event_gaps(tmp_path: Path) -> None:
    app, ex, clock = make_app(tmp_path, max_concurrent_stages=2)
    add_job(app, tmp_path)
    app.scheduler.tick()
    ex.finish("r1/sft", 0)
    app.scheduler.tick()
    app.scheduler.tick()  # reward and cost RUNNING
    run = ex.run_of("r1/reward")
    token = run.spec.env["SAFERLHF_STAGE_TOKEN"]
    streamed = [ex.emit("r1/reward", "metrics", step=i, values={"train/loss": 1.0 / i})
                for i in (1, 2, 3)]
    assert app.report_events(run.spec.attempt_id, token, streamed) == 3
    # The service dies here (kill -9: nothing is closed). The runner goes on writing its file.
    for i in (4, 5, 6):
        ex.emit("r1/reward", "metrics", step=i, values={"train/loss": 1.0 / i})
    del app

    app2, _, _ = make_app(tmp_path, executor=ex, clock=clock, max_concurrent_stages=2)
    app2.scheduler.recover()
    stored = [e.seq for e in app2.store.attempt_events(run.spec.attempt_id)]
    assert stored == [1, 2, 3, 4, 5, 6]  # the gap filled, nothing doubled
    # The runner's buffered stream catches up after the restart: all duplicates, dropped.
    file_events = read_events(Path(run.spec.output_dir) / "events.jsonl")
    assert app2.report_events(run.spec.attempt_id, token, file_events) == 0
    clock.advance(1)
    app2.scheduler.tick()
    assert len(ex.submitted) == 3  # nothing was launched twice
    ex.emit("r1/reward", "metrics", step=7, values={"train/loss": 0.1})  # never streamed
    ex.finish("r1/reward", 0, result={"eval/accuracy": 0.8})
    ex.finish("r1/cost", 0)
    app2.scheduler.tick()
    stored = [e.seq for e in app2.store.attempt_events(run.spec.attempt_id)]
    file_seqs = [e["seq"] for e in read_events(Path(run.spec.output_dir) / "events.jsonl")]
    assert stored == file_seqs == [1, 2, 3, 4, 5, 6, 7, 8]
    assert app2.store.get_stage("j-1", "r1/reward").state == AttemptState.SUCCEEDED
    assert ex.live() == ["r1/ppo_lag"]


def test_an_attempt_created_but_never_submitted_is_submitted_after_a_restart(
        tmp_path: Path) -> None:
    app, ex, clock = make_app(tmp_path)
    add_job(app, tmp_path)
    app.scheduler.tick()
    # Simulate a crash between storing the attempt and submitting it: drop the handle.
    attempt = app.store.list_attempts("j-1")[0]
    app.store.update_attempt(attempt.id, at=clock(), state=AttemptState.PENDING, handle="")
    ex.runs.clear()
    app2, _, _ = make_app(tmp_path, executor=ex, clock=clock)
    app2.scheduler.recover()
    app2.scheduler.tick()
    assert ex.submitted[-1] == attempt.id  # the same attempt, not a new one
    assert [a.number for a in app2.store.list_attempts("j-1")] == [1]


def test_events_of_other_attempts_in_the_file_are_not_taken(tmp_path: Path) -> None:
    app, ex, clock = make_app(tmp_path)
    add_job(app, tmp_path, backoff_seconds=1)
    app.scheduler.tick()
    ex.emit("r1/sft", "log", level="info", message="attempt 1 speaking")
    ex.finish("r1/sft", 75)
    app.scheduler.tick()
    clock.advance(1)
    app.scheduler.tick()
    ex.run_of("r1/sft").seq = 0  # a new attempt starts its seq at 1 again
    ex.emit("r1/sft", "log", level="info", message="attempt 2 speaking")
    ex.finish("r1/sft", 0)
    app.scheduler.tick()
    by_attempt = {a.number: [e.payload["message"] for e in app.store.attempt_events(a.id)
                             if e.type == "log"]
                  for a in app.store.list_attempts("j-1") if a.stage_id == "r1/sft"}
    assert by_attempt == {1: ["attempt 1 speaking"], 2: ["attempt 2 speaking"]}
    lines = (Path(ex.run_of("r1/sft").spec.output_dir) / "events.jsonl").read_text()
    assert len([json.loads(x) for x in lines.splitlines()]) == 2
    assert app.store.get_job("j-1").state == JobState.RUNNING
