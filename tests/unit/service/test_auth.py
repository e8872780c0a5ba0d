"""Bearer tokens scoped to projects: hashed at rest, roles read < write < admin, and a job
invisible (NOT_FOUND) outside its project — checked through a real gRPC server."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from saferlhf.service.auth import (
    EMBEDDED_ADMIN,
    TokenAuth,
    create_token,
    hash_token,
    readable_projects,
    role_allows,
)
from saferlhf.service.errors import SpecError, Unauthenticated
from saferlhf.v1 import job_service_pb2 as api
from saferlhf.v1 import job_service_pb2_grpc as api_grpc

from tests.unit.service.api.fake_controlplane import FakeControlPlane, running_server


def spec(project: str) -> str:
    return ("apiVersion: saferlhf.dev/v1alpha1\nkind: SafeRLHFJob\n"
            f"metadata: {{name: j, project: {project}}}\n")


def test_roles_are_ordered_read_write_admin():
    assert role_allows("admin", "write") and role_allows("write", "read")
    assert not role_allows("read", "write") and not role_allows(None, "read")


def test_tokens_are_stored_hashed_and_resolve_to_their_projects(tmp_path):
    path = tmp_path / "tokens.yaml"
    a = create_token(path, name="alice", project="a", role="write")
    b = create_token(path, name="bob", project="*", role="read")
    text = path.read_text()
    assert a not in text and b not in text and hash_token(a) in text
    assert (path.stat().st_mode & 0o777) == 0o600
    auth = TokenAuth(path)
    assert auth.authenticate([("authorization", f"Bearer {a}")]).projects == {"a": "write"}
    bob = auth.authenticate([("authorization", f"bearer {b}")])
    assert readable_projects(bob) is None
    with pytest.raises(Unauthenticated):
        auth.authenticate([("authorization", "Bearer srl_forged")])
    with pytest.raises(Unauthenticated):
        auth.authenticate([])


def test_without_a_tokens_file_everyone_is_the_embedded_admin():
    assert TokenAuth(None).authenticate([]) is EMBEDDED_ADMIN


def test_a_bad_tokens_file_names_the_entry_and_field(tmp_path):
    path = tmp_path / "tokens.yaml"
    path.write_text("tokens:\n  - {name: x, sha256: short, projects: {p: owner}}\n")
    with pytest.raises(SpecError) as info:
        TokenAuth(path)
    fields = {v.field for v in info.value.violations}
    assert fields == {f"{path}: tokens[0].sha256", f"{path}: tokens[0].projects.p"}


@pytest.fixture
def two_projects(tmp_path):
    path = tmp_path / "tokens.yaml"
    tokens = {
        "a_write": create_token(path, name="aw", project="a", role="write"),
        "a_read": create_token(path, name="ar", project="a", role="read"),
        "b_write": create_token(path, name="bw", project="b", role="write"),
    }
    app = FakeControlPlane()
    with running_server(app, auth=TokenAuth(path)) as (address, _):
        stub = api_grpc.JobServiceStub(grpc.insecure_channel(address))

        def call(method, request, who):
            return getattr(stub, method)(request, metadata=[
                ("authorization", f"Bearer {tokens[who]}")])
        yield app, call, stub, address


def test_a_token_of_project_a_cannot_see_or_cancel_project_bs_jobs(two_projects):
    app, call, _, _ = two_projects
    b_job = call("CreateJob", api.CreateJobRequest(spec_yaml=spec("b")), "b_write").job
    a_job = call("CreateJob", api.CreateJobRequest(spec_yaml=spec("a")), "a_write").job
    for method, request in (("GetJob", api.GetJobRequest(job_id=b_job.id)),
                            ("CancelJob", api.CancelJobRequest(job_id=b_job.id)),
                            ("RetryJob", api.RetryJobRequest(job_id=b_job.id))):
        with pytest.raises(grpc.RpcError) as info:
            call(method, request, "a_write")
        assert info.value.code() is grpc.StatusCode.NOT_FOUND  # not PERMISSION_DENIED
        assert info.value.details() == f"job {b_job.id!r} not found"
    with pytest.raises(grpc.RpcError) as info:
        list(call("WatchJob", api.WatchJobRequest(job_id=b_job.id), "a_write"))
    assert info.value.code() is grpc.StatusCode.NOT_FOUND
    listed = call("ListJobs", api.ListJobsRequest(), "a_write").jobs
    assert [j.id for j in listed] == [a_job.id]
    assert app.jobs[b_job.id].state.value == "PENDING"


def test_a_read_token_can_read_but_not_create_or_cancel(two_projects):
    _, call, _, _ = two_projects
    job = call("CreateJob", api.CreateJobRequest(spec_yaml=spec("a")), "a_write").job
    assert call("GetJob", api.GetJobRequest(job_id=job.id), "a_read").job.id == job.id
    for method, request in (("CancelJob", api.CancelJobRequest(job_id=job.id)),
                            ("CreateJob", api.CreateJobRequest(spec_yaml=spec("a")))):
        with pytest.raises(grpc.RpcError) as info:
            call(method, request, "a_read")
        assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED


def test_creating_in_another_project_is_denied_even_via_the_request_field(two_projects):
    _, call, _, _ = two_projects
    with pytest.raises(grpc.RpcError) as info:
        call("CreateJob", api.CreateJobRequest(spec_yaml=spec("a"), project="b"), "a_write")
    assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED


def test_calls_without_a_token_are_unauthenticated_but_health_is_open(two_projects):
    _, _, stub, address = two_projects
    with pytest.raises(grpc.RpcError) as info:
        stub.ListJobs(api.ListJobsRequest())
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(address))
    status = health.Check(health_pb2.HealthCheckRequest()).status
    assert status == health_pb2.HealthCheckResponse.SERVING
