"""Server factory: health and reflection always on, TLS optional, insecure binds refused."""

from __future__ import annotations

import shutil
import subprocess

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import CollectorRegistry
from saferlhf.service.api.server import check_bind, create_server
from saferlhf.service.auth import TokenAuth
from saferlhf.service.errors import SpecError
from saferlhf.v1 import job_service_pb2 as api
from saferlhf.v1 import job_service_pb2_grpc as api_grpc

from tests.unit.service.api.fake_controlplane import FakeControlPlane, running_server


def test_health_reports_serving_for_the_server_and_each_service():
    with running_server(FakeControlPlane()) as (address, _):
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(address))
        for name in ("", "saferlhf.v1.JobService", "saferlhf.v1.RunnerService"):
            status = health.Check(health_pb2.HealthCheckRequest(service=name)).status
            assert status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_public_services():
    with running_server(FakeControlPlane()) as (address, _):
        stub = reflection_pb2_grpc.ServerReflectionStub(grpc.insecure_channel(address))
        responses = stub.ServerReflectionInfo(iter([
            reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {s.name for r in responses for s in r.list_services_response.service}
    assert {"saferlhf.v1.JobService", "saferlhf.v1.RunnerService",
            "grpc.health.v1.Health"} <= names


@pytest.mark.parametrize("address", ["0.0.0.0:0", "[::]:0", "10.1.2.3:50051"])
def test_a_non_loopback_bind_without_auth_is_refused(address):
    with pytest.raises(SpecError) as info:
        check_bind(address, auth=TokenAuth(None), tls=None, allow_insecure_bind=False)
    assert info.value.violations[0].field == "listen_address"
    check_bind(address, auth=TokenAuth(None), tls=None, allow_insecure_bind=True)


def test_a_non_loopback_bind_with_tokens_is_allowed(tmp_path):
    (tmp_path / "tokens.yaml").write_text("tokens: []\n")
    check_bind("0.0.0.0:0", auth=TokenAuth(tmp_path / "tokens.yaml"), tls=None,
               allow_insecure_bind=False)
    check_bind("[::1]:0", auth=TokenAuth(None), tls=None, allow_insecure_bind=False)


def test_a_malformed_listen_address_names_the_setting():
    with pytest.raises(SpecError) as info:
        create_server("nonsense", FakeControlPlane(), auth=TokenAuth(None),
                      registry=CollectorRegistry())
    assert info.value.violations[0].field == "listen_address"


def test_tls_serves_a_client_that_trusts_the_certificate(tmp_path):
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed; it makes the test certificate")
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(tmp_path / "k.pem"), "-out", str(tmp_path / "c.pem")],
                   check=True, capture_output=True)
    from saferlhf.service.api.server import TlsFiles
    cert = (tmp_path / "c.pem").read_bytes()
    tls = TlsFiles(cert_pem=cert, key_pem=(tmp_path / "k.pem").read_bytes())
    server, port = create_server("localhost:0", FakeControlPlane(), auth=TokenAuth(None),
                                 registry=CollectorRegistry(), tls=tls)
    server.start()
    try:
        channel = grpc.secure_channel(f"localhost:{port}", grpc.ssl_channel_credentials(cert))
        jobs = api_grpc.JobServiceStub(channel)
        assert list(jobs.ListJobs(api.ListJobsRequest(), timeout=10).jobs) == []
        plain = api_grpc.JobServiceStub(grpc.insecure_channel(f"localhost:{port}"))
        with pytest.raises(grpc.RpcError):
            plain.ListJobs(api.ListJobsRequest(), timeout=5)
    finally:
        server.stop(grace=None)
