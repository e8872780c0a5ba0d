"""The CLI's gRPC client: channel, bearer token, deadlines, and gRPC errors turned into one
paragraph a person can act on (never a traceback)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
from saferlhf.service.api.errors import field_violations
from saferlhf.v1 import job_service_pb2_grpc as api_grpc

DEFAULT_SERVER = "127.0.0.1:50051"

# Exit codes of the CLI (docs/cli.md).
EXIT_FAILED = 1  # the job failed or was cancelled; or the request failed on the server
EXIT_INVALID = 2  # bad spec, request or arguments
EXIT_UNREACHABLE = 3
EXIT_DENIED = 4  # unauthenticated or permission denied
EXIT_NOT_FOUND = 5


class CliError(Exception):
    """An error the CLI reports as one paragraph and an exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def read_input(path: str, what: str = "spec") -> str:
    """The text of a file the user named, or a CliError that says which and why."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read the {what} file {path}: {exc}", EXIT_INVALID) from None


def explain(err: grpc.RpcError, server: str) -> CliError:
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = err.details() if hasattr(err, "details") else str(err)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return CliError(
            f"cannot reach the saferlhf server at {server} ({code.name.lower()}: {details}). "
            "Start one with `saferlhf serve`, or point at yours with --server HOST:PORT "
            "(or SAFERLHF_SERVER); `saferlhf run SPEC` needs no server.", EXIT_UNREACHABLE)
    if code is grpc.StatusCode.UNAUTHENTICATED:
        return CliError(f"the server at {server} did not accept your credentials: {details}. "
                        "Pass a token with --token or SAFERLHF_TOKEN.", EXIT_DENIED)
    if code is grpc.StatusCode.PERMISSION_DENIED:
        return CliError(f"permission denied: {details}", EXIT_DENIED)
    if code is grpc.StatusCode.NOT_FOUND:
        return CliError(f"not found: {details}. `saferlhf list` shows the jobs you can see.",
                        EXIT_NOT_FOUND)
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        violations = field_violations(err)
        if violations:
            lines = "\n".join(f"  {f}: {d}" for f, d in violations)
            return CliError(f"the server rejected the request ({len(violations)} problem"
                            f"{'s' if len(violations) != 1 else ''}):\n{lines}", EXIT_INVALID)
        return CliError(f"invalid request: {details}", EXIT_INVALID)
    if code is grpc.StatusCode.FAILED_PRECONDITION:
        return CliError(f"not possible now: {details}", EXIT_FAILED)
    return CliError(f"the server failed the request ({code.name}): {details}", EXIT_FAILED)


class Client:
    def __init__(self, server: str, token: str | None = None, *, ca_file: str | None = None,
                 cert_file: str | None = None, key_file: str | None = None,
                 timeout_seconds: float = 30.0) -> None:
        """`cert_file`/`key_file`: this client's certificate for a mutual-TLS service."""
        self.server = server
        self.timeout = timeout_seconds
        if ca_file:
            creds = grpc.ssl_channel_credentials(
                Path(ca_file).read_bytes(),
                private_key=Path(key_file).read_bytes() if key_file else None,
                certificate_chain=Path(cert_file).read_bytes() if cert_file else None)
            if token:
                creds = grpc.composite_channel_credentials(
                    creds, grpc.access_token_call_credentials(token))
            self._channel = grpc.secure_channel(server, creds)
            self._metadata: tuple[tuple[str, str], ...] = ()
        else:
            self._channel = grpc.insecure_channel(server)
            self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._stub = api_grpc.JobServiceStub(self._channel)

    def call(self, method: str, request: Any, *, timeout: float | None = None) -> Any:
        try:
            return getattr(self._stub, method)(request, metadata=self._metadata,
                                               timeout=timeout or self.timeout)
        except grpc.RpcError as err:
            raise explain(err, self.server) from None

    def stream(self, method: str, request: Any) -> Iterator[Any]:
        """A server stream without a deadline (watch / follow logs run as long as the job)."""
        try:
            yield from getattr(self._stub, method)(request, metadata=self._metadata)
        except grpc.RpcError as err:
            if err.code() is grpc.StatusCode.CANCELLED:
                return
            raise explain(err, self.server) from None

    def close(self) -> None:
        self._channel.close()
