"""The App with the REAL local executor and tiny child processes that act as runners (they write
events.jsonl and result.json through the runners' own EventSink; they train nothing)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from prometheus_client import CollectorRegistry
from saferlhf.runners.common.events import read_events
from saferlhf.service.app import build_app
from saferlhf.service.execution.base import LaunchSpec
from saferlhf.service.execution.local import LocalExecutor
from saferlhf.service.settings import Settings
from saferlhf.service.state.types import AttemptState, FailureClass, JobState

from tests.unit.service.scheduler.helpers import add_job

CHILD = r"""
import json, pathlib, sys, time
from saferlhf.runners.common.events import EventSink
cfg = json.load(open(sys.argv[1]))
out = pathlib.Path(cfg["output_dir"])
sink = EventSink(out)
for i in (1, 2, 3):
    sink.metrics(i, {"train/lambda": i / 2})
while not (out / "go").exists():
    time.sleep(0.05)
sink.metrics(4, {"train/lambda": 2.0})
sink.result({"eval/accuracy": 0.9})
sys.exit(int(cfg.get("exit_code", 0)))
"""


def command(spec: LaunchSpec, python: str) -> list[str]:
    return [python, "-c", CHILD, spec.config_path]


def make(tmp_path: Path, **settings):
    s = Settings(state_dir=str(tmp_path / "state"), artifacts_root=str(tmp_path / "art"),
                 **settings)
    env = {k: v for k, v in os.environ.items() if k != "SAFERLHF_EVENTS_ADDR"}
    ex = LocalExecutor(s.state_dir, command=command, base_env=env)
    return build_app(s, registry=CollectorRegistry(), executor=ex)


def tick_until(app, predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; job is {app.store.get_job('j-1')}")
        app.scheduler.tick()
        time.sleep(0.05)


def test_a_service_restart_loses_and_doubles_no_event_of_a_real_child(tmp_path: Path) -> None:
    app = make(tmp_path)
    add_job(app, tmp_path, pipeline=(("r1/sft", "sft", ()),))
    stage = app.store.get_stage("j-1", "r1/sft")
    out = Path(stage.output_dir)
    tick_until(app, lambda: len(read_events(out / "events.jsonl")) == 3)
    attempt = app.store.list_attempts("j-1")[0]
    del app  # the service is gone; the child runs on in its own session

    app2 = make(tmp_path)
    app2.scheduler.recover()
    assert [e.seq for e in app2.store.attempt_events(attempt.id)] == [1, 2, 3]
    (out / "go").write_text("")
    tick_until(app2, lambda: app2.store.get_job("j-1").state.terminal)
    assert app2.store.get_job("j-1").state == JobState.SUCCEEDED
    stored = [(e.seq, e.type) for e in app2.store.attempt_events(attempt.id)]
    in_file = [(e["seq"], e["type"]) for e in read_events(out / "events.jsonl")]
    assert stored == in_file == [(1, "metrics"), (2, "metrics"), (3, "metrics"),
                                 (4, "metrics"), (5, "result")]
    assert app2.store.get_stage("j-1", "r1/sft").result == {"eval/accuracy": 0.9}
    assert app2.get_job("j-1").latest_metrics["r1/sft"]["train/lambda"] == 2.0
    log = list(app2.stage_logs("j-1", "r1/sft", follow=False))
    assert log[0].startswith("==== saferlhf: attempt 1 of r1/sft")


def test_cancelling_a_job_stops_its_real_child(tmp_path: Path) -> None:
    app = make(tmp_path, cancel_grace_seconds=5)
    add_job(app, tmp_path, pipeline=(("r1/sft", "sft", ()),))
    tick_until(app, lambda: app.store.list_attempts("j-1")
               and app.store.list_attempts("j-1")[0].state == AttemptState.RUNNING)
    app.cancel_job("j-1", "stop")
    tick_until(app, lambda: app.store.get_job("j-1").state.terminal)
    assert app.store.get_job("j-1").state == JobState.CANCELLED
    attempt = app.store.list_attempts("j-1")[0]
    assert attempt.state == AttemptState.CANCELLED and attempt.exit_code == -15
    assert attempt.failure == FailureClass.KILLED
