"""The composition root: settings → App → gRPC server; insecure binds refused with a message."""

from __future__ import annotations

import io

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from saferlhf.service.cli.main import main
from saferlhf.service.cli.serve import in_process
from saferlhf.service.settings import Settings
from saferlhf.v1 import job_service_pb2 as api
from saferlhf.v1 import job_service_pb2_grpc as api_grpc


def test_the_in_process_service_answers_health_and_api_calls_then_stops(tmp_path):
    settings = Settings(state_dir=str(tmp_path / "state"), listen_address="127.0.0.1:0")
    with in_process(settings) as running:
        channel = grpc.insecure_channel(running.address)
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == \
            health_pb2.HealthCheckResponse.SERVING
        jobs = api_grpc.JobServiceStub(channel)
        assert list(jobs.ListJobs(api.ListJobsRequest(), timeout=10).jobs) == []
        channel.close()
    assert (tmp_path / "state" / "state.db").exists()
    channel = grpc.insecure_channel(running.address)
    try:
        grpc.channel_ready_future(channel).result(timeout=1)
        stopped = False
    except grpc.FutureTimeoutError:
        stopped = True
    channel.close()
    assert stopped


def test_serve_refuses_a_public_bind_without_auth_in_one_paragraph(tmp_path):
    err = io.StringIO()
    code = main(["serve", "--listen", "0.0.0.0:0", "--state-dir", str(tmp_path)],
                stdout=io.StringIO(), stderr=err)
    assert code == 2
    assert "listen_address" in err.getvalue() and "allow_insecure_bind" in err.getvalue()
    assert "Traceback" not in err.getvalue()


def test_serve_with_a_bad_settings_file_names_the_field(tmp_path):
    config = tmp_path / "settings.yaml"
    config.write_text("max_concurrent_stages: -3\n")
    err = io.StringIO()
    code = main(["serve", "--config", str(config)], stdout=io.StringIO(), stderr=err)
    assert code == 2 and "max_concurrent_stages" in err.getvalue()
