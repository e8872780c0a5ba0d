"""TLS and mutual TLS with generated certificates (the `cryptography` package), against the real
server in its own process: a client must trust the server's CA; under mutual TLS it must also
present a certificate the service's client CA signed. The runners' event stream works through
both (the service hands local runners the CA and, under mutual TLS, their client certificate).
And a non-loopback bind without tokens or TLS is refused at start-up."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import grpc
import pytest
from saferlhf.runners.common.report import Reporter
from saferlhf.service.app import runner_tls_env
from saferlhf.service.settings import Settings
from saferlhf.v1 import job_service_pb2 as api
from saferlhf.v1 import job_service_pb2_grpc as api_grpc

from bench.reliability.certs import Authority
from bench.reliability.fuzz import FakeServer
from bench.reliability.strategies import QUICKSTART
from tests.tools import ROOT


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    ca, stranger = Authority(folder, "ca"), Authority(folder, "stranger")
    return {"folder": folder, "ca": ca, "server": ca.server(), "client": ca.client("cli"),
            "runner": ca.client("runner"), "stranger_client": stranger.client("intruder"),
            "stranger": stranger}


def _call(address: str, ca: bytes | None, client: tuple | None = None) -> grpc.StatusCode:
    """NOT_FOUND from GetJob means the TLS handshake and the call went through."""
    if ca is None:
        channel = grpc.insecure_channel(address)
    else:
        key, cert = (client[1].read_bytes(), client[0].read_bytes()) if client else (None, None)
        channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(
            ca, private_key=key, certificate_chain=cert))
    try:
        api_grpc.JobServiceStub(channel).GetJob(api.GetJobRequest(job_id="nope"), timeout=5)
    except grpc.RpcError as err:
        return err.code()
    finally:
        channel.close()
    return grpc.StatusCode.OK


def _stream_as_runner(server: FakeServer, ca: bytes, client: tuple | None) -> int:
    """Create a job, then report one event with its stage token over TLS; events stored."""
    import yaml

    channel = grpc.secure_channel(server.address, grpc.ssl_channel_credentials(
        ca, *((client[1].read_bytes(), client[0].read_bytes()) if client else (None, None))))
    job = api_grpc.JobServiceStub(channel).CreateJob(
        api.CreateJobRequest(spec_yaml=yaml.safe_dump(QUICKSTART)), timeout=60).job.id
    channel.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not server.attempts():
        time.sleep(0.1)
    attempt_id, info = next((a, s) for a, s in server.attempts().items() if s["job"] == job)
    cert = (client[0].read_bytes(), client[1].read_bytes()) if client else None
    reporter = Reporter(server.address, attempt_id=attempt_id, token=info["token"],
                        ca_pem=ca, client_cert=cert)
    reporter({"seq": 1, "attempt": 1, "time": "t", "type": "log", "level": "info",
              "message": "over TLS"})
    reporter.close(timeout=10)
    return reporter.sent


def test_tls_needs_the_servers_ca_and_carries_the_runners_stream(tmp_path, pki):
    cert, key = pki["server"]
    server = FakeServer(tmp_path, tls=(cert, key, None))
    try:
        ca = pki["ca"].cert_path.read_bytes()
        assert _call(server.address, ca) == grpc.StatusCode.NOT_FOUND
        assert _call(server.address, None) == grpc.StatusCode.UNAVAILABLE  # plaintext
        assert _call(server.address, pki["stranger"].cert_path.read_bytes()) == \
            grpc.StatusCode.UNAVAILABLE  # a CA that did not sign the server
        assert _stream_as_runner(server, ca, None) == 1
    finally:
        server.stop()


def test_mutual_tls_needs_a_client_certificate_its_ca_signed(tmp_path, pki):
    cert, key = pki["server"]
    server = FakeServer(tmp_path, tls=(cert, key, pki["ca"].cert_path))
    try:
        ca = pki["ca"].cert_path.read_bytes()
        assert _call(server.address, ca, pki["client"]) == grpc.StatusCode.NOT_FOUND
        assert _call(server.address, ca) == grpc.StatusCode.UNAVAILABLE  # no certificate
        assert _call(server.address, ca, pki["stranger_client"]) == \
            grpc.StatusCode.UNAVAILABLE  # signed by another CA
        assert _stream_as_runner(server, ca, pki["runner"]) == 1
        from saferlhf.service.cli.client import Client, CliError

        cert_file, key_file = pki["client"]
        cli = Client(server.address, ca_file=str(pki["ca"].cert_path), cert_file=str(cert_file),
                     key_file=str(key_file), timeout_seconds=10)
        with pytest.raises(CliError, match="nope"):  # NOT_FOUND, explained: the call went through
            cli.call("GetJob", api.GetJobRequest(job_id="nope"))
        cli.close()
    finally:
        server.stop()


def test_local_runners_get_the_ca_and_their_certificate_to_stream_under_tls(tmp_path, pki):
    """They got nothing before: under TLS their stream was refused (plaintext to a TLS port)
    and the service only learned of their events from the files, after the fact."""
    cert, key = pki["server"]
    runner_cert, runner_key = pki["runner"]
    env = runner_tls_env(Settings(state_dir=str(tmp_path), tls_cert=str(cert), tls_key=str(key),
                                  tls_ca=str(pki["ca"].cert_path),
                                  tls_client_ca=str(pki["ca"].cert_path),
                                  runner_tls_cert=str(runner_cert),
                                  runner_tls_key=str(runner_key)))
    assert env == {"SAFERLHF_EVENTS_CA": str(pki["ca"].cert_path),
                   "SAFERLHF_EVENTS_CERT": str(runner_cert),
                   "SAFERLHF_EVENTS_KEY": str(runner_key)}
    assert runner_tls_env(Settings(state_dir=str(tmp_path))) == {}
    self_signed = runner_tls_env(Settings(state_dir=str(tmp_path), tls_cert=str(cert),
                                          tls_key=str(key)))
    assert self_signed == {"SAFERLHF_EVENTS_CA": str(cert)}


@pytest.mark.parametrize(("extra", "refused"), [([], True), (["--tokens-file", "T"], False)])
def test_a_non_loopback_bind_is_refused_without_auth(tmp_path, extra, refused):
    from saferlhf.service.auth import create_token

    create_token(tmp_path / "tokens.yaml", name="x", project="p", role="read")
    extra = [str(tmp_path / "tokens.yaml") if a == "T" else a for a in extra]
    proc = subprocess.Popen(
        [sys.executable, "-m", "saferlhf.service", "serve", "--listen", "0.0.0.0:0",
         "--state-dir", str(tmp_path / "state"), "--metrics-address", "127.0.0.1:0", *extra],
        cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
        code = None
    else:
        code = proc.returncode
    if refused:
        assert code not in (None, 0) and "refusing to listen" in out, out
        assert "Traceback" not in out
    else:
        assert code is None, out  # it was serving until terminated
