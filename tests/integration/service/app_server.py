"""A real gRPC server over the real App on 127.0.0.1:0 (SQLite in a temp dir), for the
integration tests of the API. The executor is E2's FakeExecutor unless one is given."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
from prometheus_client import CollectorRegistry
from saferlhf.service.api.server import create_server
from saferlhf.service.auth import TokenAuth
from saferlhf.service.settings import Settings
from saferlhf.v1 import job_service_pb2_grpc as api_grpc

T = TypeVar("T")


@dataclass
class Served:
    address: str
    app: Any
    executor: Any
    jobs: api_grpc.JobServiceStub
    registry: CollectorRegistry


@contextlib.contextmanager
def app_server(state_dir: Path, *, executor: Any = None, auth: TokenAuth | None = None,
               **settings: Any) -> Iterator[Served]:
    from saferlhf.service.app import build_app

    from tests.fakes import FakeExecutor

    executor = executor if executor is not None else FakeExecutor()
    cfg = Settings(state_dir=str(state_dir), reconcile_interval_seconds=0.05, **settings)
    registry = CollectorRegistry()
    app = build_app(cfg, registry=registry, executor=executor)
    server, port = create_server("127.0.0.1:0", app, auth=auth or TokenAuth(None),
                                 registry=registry)
    address = f"127.0.0.1:{port}"
    app.set_events_address(address)
    server.start()
    app.start()
    channel = grpc.insecure_channel(address)
    try:
        yield Served(address, app, executor, api_grpc.JobServiceStub(channel), registry)
    finally:
        channel.close()
        server.stop(grace=None)
        app.close()


def wait_for(probe: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
