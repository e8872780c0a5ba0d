"""The gRPC server factory (Temporal style): `create_server(address, app, auth=…, registry=…)`
returns an unstarted server and the port it bound (tests bind port 0). grpc.health.v1 health
checking and server reflection are always on. A non-loopback bind without auth (tokens or TLS)
is refused unless `allow_insecure_bind` (DESIGN §11).
"""

from __future__ import annotations

import ipaddress
from concurrent import futures
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry
from saferlhf.service.api.interceptors import ServerInterceptor
from saferlhf.service.api.servicer import JobServicer, RunnerServicer
from saferlhf.service.auth import TokenAuth
from saferlhf.service.controlplane import ControlPlane
from saferlhf.service.errors import FieldViolation, SpecError
from saferlhf.v1 import job_service_pb2, runner_service_pb2
from saferlhf.v1 import job_service_pb2_grpc as api_grpc
from saferlhf.v1 import runner_service_pb2_grpc as rpb_grpc

SERVICE_NAMES = (
    job_service_pb2.DESCRIPTOR.services_by_name["JobService"].full_name,
    runner_service_pb2.DESCRIPTOR.services_by_name["RunnerService"].full_name,
)
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class TlsFiles:
    """PEM server certificate and key (the contents, not paths); with `client_ca_pem`, mutual
    TLS: every client must present a certificate signed by that CA."""

    cert_pem: bytes
    key_pem: bytes
    client_ca_pem: bytes | None = None


def split_address(address: str) -> tuple[str, int]:
    """"host:port" or "[v6]:port" → (host, port); raises SpecError naming listen_address."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise SpecError([FieldViolation("listen_address",
                                        f"expected host:port, got {address!r}")])
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(address: str, *, auth: TokenAuth, tls: TlsFiles | None,
               allow_insecure_bind: bool) -> None:
    host, _ = split_address(address)
    if is_loopback(host) or auth.enabled or tls is not None or allow_insecure_bind:
        return
    raise SpecError([FieldViolation(
        "listen_address",
        f"refusing to listen on non-loopback {address!r} without authentication: configure "
        "tokens_file (and/or tls_cert + tls_key), or set allow_insecure_bind: true if the network "
        "is trusted",
    )], f"refusing to listen on {address!r} without tokens or TLS (DESIGN §11)")


def create_server(
    address: str,
    app: ControlPlane,
    *,
    auth: TokenAuth,
    registry: CollectorRegistry,
    tls: TlsFiles | None = None,
    allow_insecure_bind: bool = False,
    max_workers: int = 128,
) -> tuple[grpc.Server, int]:
    """Build the server (not started). `max_workers` bounds concurrent RPCs, streams included:
    every WatchJob and follow-logs stream holds a worker while open."""
    check_bind(address, auth=auth, tls=tls, allow_insecure_bind=allow_insecure_bind)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        interceptors=[ServerInterceptor(auth, registry)],
        options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                 ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)],
    )
    api_grpc.add_JobServiceServicer_to_server(JobServicer(app, auth), server)
    rpb_grpc.add_RunnerServiceServicer_to_server(RunnerServicer(app), server)
    health_servicer = health.HealthServicer()
    for name in ("", *SERVICE_NAMES):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    try:
        if tls is not None:
            creds = grpc.ssl_server_credentials(
                [(tls.key_pem, tls.cert_pem)], root_certificates=tls.client_ca_pem,
                require_client_auth=tls.client_ca_pem is not None)
            port = server.add_secure_port(address, creds)
        else:
            port = server.add_insecure_port(address)
    except RuntimeError:
        port = 0
    if port == 0:
        raise SpecError([FieldViolation("listen_address", f"could not bind {address!r} "
                                                          "(in use, or not an address here)")])
    server.health_servicer = health_servicer  # type: ignore[attr-defined]  # graceful shutdown
    return server, port
