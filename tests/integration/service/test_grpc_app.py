"""The gRPC API over the real App (SQLite store, spec loader, planner, scheduler) with E2's
FakeExecutor standing in for processes (no runner is pretended to train: the test acts out the
events a runner would stream, through the real RunnerService)."""

from __future__ import annotations

import threading
import time

import grpc
import pytest
from saferlhf.service.api.errors import field_violations
from saferlhf.v1 import job_service_pb2 as api
from saferlhf.v1 import resources_pb2 as pb
from saferlhf.v1 import runner_service_pb2 as rpb
from saferlhf.v1 import runner_service_pb2_grpc as rpb_grpc

from tests.integration.service.app_server import app_server, wait_for
from tests.tools import ROOT

QUICKSTART = (ROOT / "examples" / "quickstart.yaml").read_text()


@pytest.fixture
def served(tmp_path):
    with app_server(tmp_path) as ctx:
        yield ctx


def test_a_job_is_created_planned_listed_and_idempotent_on_request_id(served):
    jobs = served.jobs
    job = jobs.CreateJob(api.CreateJobRequest(spec_yaml=QUICKSTART, request_id="req-1")).job
    assert job.project == "demo" and job.name == "quickstart"
    again = jobs.CreateJob(api.CreateJobRequest(spec_yaml=QUICKSTART, request_id="req-1")).job
    assert again.id == job.id
    got = jobs.GetJob(api.GetJobRequest(job_id=job.id))
    kinds = {s.kind for s in got.stages}
    assert {"sft", "reward", "cost", "ppo_lag", "evaluate"} <= kinds
    assert {s.round for s in got.stages} == {1, 2}
    assert len(got.gates) >= 2
    listed = jobs.ListJobs(api.ListJobsRequest(filter="project=demo"))
    assert [j.id for j in listed.jobs] == [job.id]


def test_validate_only_accepts_the_quickstart_and_stores_nothing(served):
    response = served.jobs.CreateJob(api.CreateJobRequest(spec_yaml=QUICKSTART,
                                                          validate_only=True))
    assert response.valid and not response.HasField("job")
    assert list(served.jobs.ListJobs(api.ListJobsRequest()).jobs) == []


def test_an_invalid_spec_reports_every_violation_with_its_field(served):
    bad = QUICKSTART.replace("lambda_lr: 0.1", "lambda_lr: -1").replace(
        "lambda_max: 5.0", "lambda_max: -5")
    with pytest.raises(grpc.RpcError) as info:
        served.jobs.CreateJob(api.CreateJobRequest(spec_yaml=bad))
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    fields = {f for f, _ in field_violations(info.value)}
    assert {"spec.stages.ppo_lag.lambda_lr", "spec.stages.ppo_lag.lambda_max"} <= fields


def test_runner_events_stream_in_and_watch_resumes_from_a_cursor(served):
    jobs = served.jobs
    job = jobs.CreateJob(api.CreateJobRequest(spec_yaml=QUICKSTART)).job
    run = wait_for(lambda: next(iter(served.executor.runs.values()), None), "an sft attempt")
    token = run.spec.env["SAFERLHF_STAGE_TOKEN"]
    runner = rpb_grpc.RunnerServiceStub(grpc.insecure_channel(served.address))
    events = [pb.Event(seq=s, attempt=1, time="2026-11-27T10:00:00Z", type=pb.EVENT_TYPE_METRICS,
                       payload_json=f'{{"step": {s}, "values": {{"train/loss": {1 / s}}}}}')
              for s in range(1, 6)]
    md = [("authorization", f"Bearer {token}")]
    sent = runner.ReportEvents(rpb.ReportEventsRequest(attempt_id=run.spec.attempt_id,
                                                       events=events), metadata=md)
    assert sent.stored == 5
    dup = runner.ReportEvents(rpb.ReportEventsRequest(attempt_id=run.spec.attempt_id,
                                                      events=events[3:]), metadata=md)
    assert dup.stored == 0
    with pytest.raises(grpc.RpcError) as info:
        runner.ReportEvents(rpb.ReportEventsRequest(attempt_id=run.spec.attempt_id,
                                                    events=events[:1]),
                            metadata=[("authorization", "Bearer forged")])
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED

    def read(after: int, n: int) -> list:
        out = []
        stream = jobs.WatchJob(api.WatchJobRequest(job_id=job.id, after_cursor=after))
        for msg in stream:
            out.append(msg)
            if len(out) == n:
                stream.cancel()
                break
        return out

    everything = []
    stream = jobs.WatchJob(api.WatchJobRequest(job_id=job.id))
    deadline = time.monotonic() + 20
    for msg in stream:
        everything.append(msg)
        if sum(m.WhichOneof("update") == "event" for m in everything) == 5:
            stream.cancel()
            break
        assert time.monotonic() < deadline
    cursors = [m.cursor for m in everything]
    assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)
    middle = everything[len(everything) // 2].cursor
    resumed = read(middle, len([c for c in cursors if c > middle]))
    assert [m.cursor for m in resumed] == [c for c in cursors if c > middle]
    steps = [m.metric_points[0].step for m in everything if m.WhichOneof("update") == "event"]
    assert steps == [1, 2, 3, 4, 5]


def test_fifty_watchers_all_see_a_cancel(served):
    jobs = served.jobs
    job = jobs.CreateJob(api.CreateJobRequest(spec_yaml=QUICKSTART)).job
    finals: list[int] = []
    lock = threading.Lock()

    def watch() -> None:
        last = None
        for msg in jobs.WatchJob(api.WatchJobRequest(job_id=job.id)):
            if msg.WhichOneof("update") == "job":
                last = msg.job.state
        with lock:
            finals.append(last)
    threads = [threading.Thread(target=watch) for _ in range(50)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    jobs.CancelJob(api.CancelJobRequest(job_id=job.id, reason="test"))
    for t in threads:
        t.join(timeout=60)
    assert finals == [pb.JOB_STATE_CANCELLED] * 50
