"""The servicers through a real gRPC server on port 0, over the FakeControlPlane."""

from __future__ import annotations

import threading

import grpc
import pytest
from saferlhf.service.api.errors import field_violations
from saferlhf.service.state.types import JobState
from saferlhf.v1 import job_service_pb2 as api
from saferlhf.v1 import job_service_pb2_grpc as api_grpc
from saferlhf.v1 import resources_pb2 as pb
from saferlhf.v1 import runner_service_pb2 as rpb
from saferlhf.v1 import runner_service_pb2_grpc as rpb_grpc

from tests.unit.service.api.fake_controlplane import FakeControlPlane, running_server

SPEC = "apiVersion: saferlhf.dev/v1alpha1\nkind: SafeRLHFJob\nmetadata: {name: t, project: p}\n"


@pytest.fixture
def served():
    app = FakeControlPlane()
    with running_server(app) as (address, registry):
        channel = grpc.insecure_channel(address)
        yield app, api_grpc.JobServiceStub(channel), rpb_grpc.RunnerServiceStub(channel), registry
        channel.close()


def test_create_get_and_list_go_through_the_control_plane(served):
    app, jobs, _, _ = served
    created = jobs.CreateJob(api.CreateJobRequest(spec_yaml=SPEC, request_id="r1")).job
    assert created.name == "t" and created.project == "p"
    assert created.state == pb.JOB_STATE_PENDING
    again = jobs.CreateJob(api.CreateJobRequest(spec_yaml=SPEC, request_id="r1")).job
    assert again.id == created.id
    got = jobs.GetJob(api.GetJobRequest(job_id=created.id))
    assert got.job.id == created.id and [s.id for s in got.stages] == ["r1/sft"]
    listed = jobs.ListJobs(api.ListJobsRequest(page_size=10))
    assert [j.id for j in listed.jobs] == [created.id]


def test_validate_only_stores_nothing(served):
    app, jobs, _, _ = served
    response = jobs.CreateJob(api.CreateJobRequest(spec_yaml=SPEC, validate_only=True))
    assert response.valid and not response.HasField("job")
    assert app.jobs == {}


def test_an_invalid_spec_is_invalid_argument_with_every_field_violation(served):
    _, jobs, _, _ = served
    with pytest.raises(grpc.RpcError) as info:
        jobs.CreateJob(api.CreateJobRequest(spec_yaml="kind: Other\nmetadata: {}\n"))
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert {f for f, _ in field_violations(info.value)} == {"kind", "metadata.name"}


def test_empty_request_fields_are_named_as_field_violations(served):
    _, jobs, _, _ = served
    with pytest.raises(grpc.RpcError) as info:
        jobs.ApproveGate(api.ApproveGateRequest())
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert {f for f, _ in field_violations(info.value)} == {"job_id", "gate_id"}
    with pytest.raises(grpc.RpcError) as info:
        jobs.ListJobs(api.ListJobsRequest(page_size=-1))
    assert [f for f, _ in field_violations(info.value)] == ["page_size"]


def test_a_missing_job_is_not_found_and_a_finished_one_cannot_be_cancelled(served):
    app, jobs, _, _ = served
    with pytest.raises(grpc.RpcError) as info:
        jobs.GetJob(api.GetJobRequest(job_id="j-nope"))
    assert info.value.code() is grpc.StatusCode.NOT_FOUND
    job_id = jobs.CreateJob(api.CreateJobRequest(spec_yaml=SPEC)).job.id
    assert jobs.CancelJob(api.CancelJobRequest(job_id=job_id)).job.state == pb.JOB_STATE_CANCELLED
    with pytest.raises(grpc.RpcError) as info:
        jobs.CancelJob(api.CancelJobRequest(job_id=job_id))
    assert info.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert jobs.RetryJob(api.RetryJobRequest(job_id=job_id)).job.state == pb.JOB_STATE_RUNNING


def test_an_unexpected_exception_is_internal_without_internals(served, monkeypatch):
    app, jobs, _, _ = served

    def boom(job_id):
        raise RuntimeError("secret path /etc/x")
    monkeypatch.setattr(app, "get_job", boom)
    with pytest.raises(grpc.RpcError) as info:
        jobs.GetJob(api.GetJobRequest(job_id="j-1"))
    assert info.value.code() is grpc.StatusCode.INTERNAL
    assert "secret" not in info.value.details()


def test_approve_gate_and_labels_round_trip(served):
    _, jobs, _, _ = served
    job_id = jobs.CreateJob(api.CreateJobRequest(spec_yaml=SPEC)).job.id
    gate = jobs.ApproveGate(api.ApproveGateRequest(job_id=job_id, gate_id="r1/sft/0",
                                                   approve=False, comment="too harmful")).gate
    assert gate.state == pb.GATE_STATE_REJECTED and gate.message == "too harmful"
    exported = jobs.ExportSamples(api.ExportSamplesRequest(job_id=job_id, round=2))
    assert exported.filename.endswith(".jsonl") and exported.content
    with pytest.raises(grpc.RpcError) as info:
        jobs.ImportLabels(api.ImportLabelsRequest(job_id=job_id, round=2, content=b"{}\n"))
    assert field_violations(info.value) == [("labels row 1: better", "required")]


def test_stage_logs_stream_their_lines(served):
    app, jobs, _, _ = served
    job_id = jobs.CreateJob(api.CreateJobRequest(spec_yaml=SPEC)).job.id
    app.logs[(job_id, "r1/sft")] = [f"line {i}\n" for i in range(250)]
    lines = [ln for chunk in jobs.GetStageLogs(api.GetStageLogsRequest(
        job_id=job_id, stage_id="r1/sft")) for ln in chunk.lines]
    assert lines == [f"line {i}" for i in range(250)]


def _report(runner, attempt_id, token, seqs):
    events = [pb.Event(seq=s, attempt=1, time="t", type=pb.EVENT_TYPE_METRICS,
                       payload_json=f'{{"step": {s}, "values": {{"train/lambda": {s / 10}}}}}')
              for s in seqs]
    return runner.ReportEvents(rpb.ReportEventsRequest(attempt_id=attempt_id, events=events),
                               metadata=[("authorization", f"Bearer {token}")])


def test_report_events_is_idempotent_and_needs_the_stage_token(served):
    app, jobs, runner, _ = served
    job_id = jobs.CreateJob(api.CreateJobRequest(spec_yaml=SPEC)).job.id
    attempt_id = app.add_attempt(job_id, "r1/sft", "stage-secret")
    assert _report(runner, attempt_id, "stage-secret", [1, 2, 3]).stored == 3
    again = _report(runner, attempt_id, "stage-secret", [2, 3, 4])
    assert (again.stored, again.received) == (1, 3)
    with pytest.raises(grpc.RpcError) as info:
        _report(runner, attempt_id, "wrong", [5])
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
    bad = rpb.ReportEventsRequest(attempt_id=attempt_id, events=[pb.Event(seq=0, payload_json="[")])
    with pytest.raises(grpc.RpcError) as info:
        runner.ReportEvents(bad, metadata=[("authorization", "Bearer stage-secret")])
    assert {f for f, _ in field_violations(info.value)} == {
        "events[0].seq", "events[0].type", "events[0].payload_json"}


def test_watch_replays_after_a_cursor_then_follows_live_updates_until_the_job_ends(served):
    app, jobs, runner, _ = served
    job_id = jobs.CreateJob(api.CreateJobRequest(spec_yaml=SPEC)).job.id
    attempt_id = app.add_attempt(job_id, "r1/sft", "tok")
    _report(runner, attempt_id, "tok", [1, 2])  # cursors 2, 3 (1 = job created)
    seen = []

    def watch():
        for msg in jobs.WatchJob(api.WatchJobRequest(job_id=job_id, after_cursor=2)):
            seen.append(msg)
    thread = threading.Thread(target=watch)
    thread.start()
    _report(runner, attempt_id, "tok", [3])
    app.set_state(job_id, JobState.SUCCEEDED)
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert [m.cursor for m in seen] == [3, 4, 5]
    assert [m.WhichOneof("update") for m in seen] == ["event", "event", "job"]
    assert [p.value for p in seen[0].metric_points] == [0.2]
    assert seen[-1].job.state == pb.JOB_STATE_SUCCEEDED


def test_request_metrics_count_each_method_and_code(served):
    _, jobs, _, registry = served
    jobs.ListJobs(api.ListJobsRequest())
    with pytest.raises(grpc.RpcError):
        jobs.GetJob(api.GetJobRequest(job_id="nope"))
    assert registry.get_sample_value("saferlhf_grpc_requests_total", {
        "method": "saferlhf.v1.JobService/ListJobs", "code": "OK"}) == 1.0
    assert registry.get_sample_value("saferlhf_grpc_requests_total", {
        "method": "saferlhf.v1.JobService/GetJob", "code": "NOT_FOUND"}) == 1.0
    assert registry.get_sample_value("saferlhf_grpc_request_duration_seconds_count", {
        "method": "saferlhf.v1.JobService/GetJob"}) == 1.0


def test_report_events_rejects_absurdly_nested_payloads_and_keeps_the_header_authoritative(
        served):
    app, jobs, runner, _ = served
    job_id = jobs.CreateJob(api.CreateJobRequest(spec_yaml=SPEC)).job.id
    attempt_id = app.add_attempt(job_id, "r1/sft", "tok")
    md = [("authorization", "Bearer tok")]
    deep = pb.Event(seq=1, type=pb.EVENT_TYPE_LOG, payload_json="[" * 100_000)
    with pytest.raises(grpc.RpcError) as info:
        runner.ReportEvents(rpb.ReportEventsRequest(attempt_id=attempt_id, events=[deep]),
                            metadata=md)
    assert field_violations(info.value)[0][0] == "events[0].payload_json"
    sneaky = pb.Event(seq=2, attempt=1, time="t", type=pb.EVENT_TYPE_LOG,
                      payload_json='{"seq": 99, "type": "result", "message": "m"}')
    runner.ReportEvents(rpb.ReportEventsRequest(attempt_id=attempt_id, events=[sneaky]),
                        metadata=md)
    stored = app.events[(attempt_id, 2)]
    assert (stored.seq, stored.type, stored.payload["message"]) == (2, "log", "m")
