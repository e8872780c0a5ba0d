"""saferlhf.runners.common.report against a real server: events arrive in order, calls never block,
events wait while the service is away and arrive once it is back."""

from __future__ import annotations

import json
import socket
import time

import pytest
from saferlhf.runners.common import report
from saferlhf.runners.common.events import EventSink
from saferlhf.service.state.types import JobState

from tests.unit.service.api.fake_controlplane import FakeControlPlane, running_server

SPEC = "apiVersion: saferlhf.dev/v1alpha1\nkind: SafeRLHFJob\nmetadata: {name: t, project: p}\n"


def _job_with_attempt(app: FakeControlPlane, token: str = "tok") -> str:
    job = app.create_job(SPEC, project=None, request_id="", validate_only=False)
    return app.add_attempt(job.id, "r1/sft", token)


def _stored_seqs(app: FakeControlPlane, attempt_id: str) -> list[int]:
    return sorted(seq for (aid, seq) in app.events if aid == attempt_id)


@pytest.fixture
def env(monkeypatch):
    def set_env(address: str, attempt_id: str, token: str = "tok") -> None:
        monkeypatch.setenv("SAFERLHF_EVENTS_ADDR", address)
        monkeypatch.setenv("SAFERLHF_ATTEMPT_ID", attempt_id)
        monkeypatch.setenv("SAFERLHF_STAGE_TOKEN", token)
    return set_env


def test_a_sink_streams_every_event_it_writes_to_the_service(tmp_path, env):
    app = FakeControlPlane()
    attempt_id = _job_with_attempt(app)
    with running_server(app) as (address, _):
        env(address, attempt_id)
        sink = EventSink(tmp_path, attempt=1)
        for step in range(1, 1201):
            sink.metrics(step, {"train/lambda": step / 100})
        sink.result({"train/lambda": 12.0})
        sink.close()
    assert _stored_seqs(app, attempt_id) == list(range(1, 1202))
    written = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    stored = app.events[(attempt_id, 7)].payload
    assert stored == written[6]


def test_reporting_never_blocks_while_the_service_is_unreachable(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here
    reporter = report.Reporter(f"127.0.0.1:{port}", attempt_id="a", token="t")
    started = time.perf_counter()
    for seq in range(1, 20_001):
        reporter({"seq": seq, "attempt": 1, "time": "t", "type": "log", "message": "x"})
    assert time.perf_counter() - started < 2.0
    started = time.perf_counter()
    reporter.close(timeout=0.5)
    assert time.perf_counter() - started < 3.0
    assert reporter.sent == 0


def test_events_sent_while_the_service_is_away_arrive_when_it_comes_back(tmp_path, env):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = FakeControlPlane()
    attempt_id = _job_with_attempt(app)
    reporter = report.Reporter(f"127.0.0.1:{port}", attempt_id=attempt_id, token="tok")
    for seq in range(1, 51):
        reporter({"seq": seq, "attempt": 1, "time": "t", "type": "progress", "step": seq,
                  "total_steps": 50})
    time.sleep(0.5)  # a few failed tries
    assert reporter.sent == 0
    from prometheus_client import CollectorRegistry
    from saferlhf.service.api.server import create_server
    from saferlhf.service.auth import TokenAuth
    server, bound = create_server(f"127.0.0.1:{port}", app, auth=TokenAuth(None),
                                  registry=CollectorRegistry())
    server.start()
    try:
        reporter.close(timeout=20)
    finally:
        server.stop(grace=None)
    assert _stored_seqs(app, attempt_id) == list(range(1, 51))


def test_a_refused_stage_token_stops_streaming_without_raising(tmp_path, env):
    app = FakeControlPlane()
    attempt_id = _job_with_attempt(app, token="right")
    with running_server(app) as (address, _):
        reporter = report.Reporter(address, attempt_id=attempt_id, token="wrong")
        reporter({"seq": 1, "attempt": 1, "time": "t", "type": "log", "message": "x"})
        reporter.close(timeout=5)
        reporter({"seq": 2, "attempt": 1, "time": "t", "type": "log", "message": "x"})
    assert app.events == {} and reporter.sent == 0


def test_a_resumed_runner_resends_the_attempts_earlier_events_and_only_those(tmp_path, env):
    app = FakeControlPlane()
    attempt_id = _job_with_attempt(app)
    lines = [{"seq": 1, "attempt": 1, "time": "t", "type": "log", "message": "old attempt"},
             {"seq": 1, "attempt": 2, "time": "t", "type": "log", "message": "a"},
             {"seq": 2, "attempt": 2, "time": "t", "type": "log", "message": "b"}]
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"to')
    with running_server(app) as (address, _):
        env(address, attempt_id)
        sink = EventSink(tmp_path, attempt=2)
        sink.log("c")
        sink.close()
    assert [app.events[(attempt_id, s)].payload["message"] for s in (1, 2, 3)] == ["a", "b", "c"]
    app.set_state(app.events[(attempt_id, 1)].job_id, JobState.SUCCEEDED)


def test_without_the_environment_streaming_is_off_and_harmless(tmp_path, monkeypatch):
    monkeypatch.delenv("SAFERLHF_STAGE_TOKEN", raising=False)
    forward = report.start_reporter(tmp_path / "events.jsonl", 1)
    forward({"seq": 1, "type": "log"})
    forward.close()
    assert not isinstance(forward, report.Reporter)
