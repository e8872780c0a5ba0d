"""`saferlhf serve` and `saferlhf run`: the composition root — settings → App (store, planner,
scheduler, executor) → gRPC server (+ /metrics) — in the foreground or inside the CLI process."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from saferlhf.service.api.server import TlsFiles, check_bind, create_server
from saferlhf.service.auth import TokenAuth
from saferlhf.service.cli.client import EXIT_INVALID, CliError
from saferlhf.service.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Running:
    """A started service: its gRPC address and the objects to stop."""

    address: str
    port: int
    app: Any
    server: Any
    metrics_server: Any = None

    def stop(self, grace_seconds: float = 5.0) -> None:
        health = getattr(self.server, "health_servicer", None)
        if health is not None:
            health.enter_graceful_shutdown()
        self.server.stop(grace=grace_seconds).wait(grace_seconds + 1)
        self.app.stop()
        if self.metrics_server is not None:
            self.metrics_server.shutdown()


def _tls(settings: Settings) -> TlsFiles | None:
    if not settings.tls_cert and not settings.tls_key:
        if settings.tls_client_ca:
            raise CliError("tls_client_ca (mutual TLS) needs tls_cert and tls_key too.",
                           EXIT_INVALID)
        return None
    if not (settings.tls_cert and settings.tls_key):
        raise CliError("TLS needs both tls_cert and tls_key (PEM files).", EXIT_INVALID)
    try:
        client_ca = Path(settings.tls_client_ca).read_bytes() if settings.tls_client_ca \
            else None
        return TlsFiles(Path(settings.tls_cert).read_bytes(), Path(settings.tls_key).read_bytes(),
                        client_ca)
    except OSError as exc:
        raise CliError(f"cannot read the TLS files: {exc}", EXIT_INVALID) from None


def freeze_startup_heap() -> None:
    """Move everything allocated while starting (modules, protos, the app) out of the garbage
    collector's reach: full collections then scan only what requests allocate, which takes the
    worst pauses out of request latency (bench/control_plane.py, create_validate p99)."""
    gc.collect()
    gc.freeze()


def start(settings: Settings, *, serve_metrics_endpoint: bool = True) -> Running:
    """Build and start everything; raises CliError with a readable message on bad settings."""
    try:
        from saferlhf.service.app import build_app
    except ImportError as exc:  # the control plane is not installed in this checkout
        raise CliError(f"the control plane (saferlhf.service.app) cannot be loaded: {exc}"
                       ) from None
    auth = TokenAuth(settings.tokens_file)
    tls = _tls(settings)
    check_bind(settings.listen_address, auth=auth, tls=tls,
               allow_insecure_bind=settings.allow_insecure_bind)  # before touching any state
    registry = CollectorRegistry()
    app = build_app(settings, registry=registry)  # creates the catalogued metrics first
    try:
        server, port = create_server(settings.listen_address, app, auth=auth,
                                     registry=registry, tls=tls,
                                     allow_insecure_bind=settings.allow_insecure_bind)
    except BaseException:
        app.close()
        raise
    host = settings.listen_address.rpartition(":")[0].strip("[]")
    connect_host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    if ":" in connect_host:
        connect_host = f"[{connect_host}]"
    address = f"{connect_host}:{port}"
    app.set_events_address(address)
    server.start()
    app.start()
    freeze_startup_heap()
    metrics_server = None
    if serve_metrics_endpoint:
        from saferlhf.service.metrics import serve_metrics

        try:
            metrics_server, _ = serve_metrics(registry, settings.metrics_address)
        except OSError as exc:
            log.warning("metrics endpoint %s not served: %s", settings.metrics_address, exc)
    return Running(address=address, port=port, app=app, server=server,
                   metrics_server=metrics_server)


def serve_forever(running: Running, out: Any) -> int:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    metrics = running.metrics_server
    where = f", metrics on :{metrics.server_port}/metrics" if metrics is not None else ""
    out.write(f"saferlhf serving on {running.address}{where}\n")
    out.flush()
    stop.wait()
    out.write("shutting down…\n")
    running.stop()
    return 0


@contextlib.contextmanager
def in_process(settings: Settings) -> Iterator[Running]:
    running = start(settings, serve_metrics_endpoint=False)
    try:
        yield running
    finally:
        running.stop(grace_seconds=1.0)


# --- commands -------------------------------------------------------------------------------


def _settings(args: Any, overrides: dict[str, Any]) -> Settings:
    from saferlhf.service.settings import load_settings

    return load_settings(getattr(args, "config", None), overrides=overrides)


def cmd_serve(args: Any, out: Any) -> int:
    settings = _settings(args, {
        "listen_address": args.listen, "metrics_address": args.metrics_address,
        "state_dir": args.state_dir, "database_url": args.database_url,
        "executor": args.executor, "tokens_file": args.tokens_file,
        "allow_insecure_bind": args.allow_insecure_bind,
    })
    return serve_forever(start(settings), out)


def laptop_settings(settings: Settings, cpus: int | None = None) -> Settings:
    """`saferlhf run` on one machine: unless the settings name `max_concurrent_stages`, run two
    stages at once where there are two cores, so the reward and cost models train side by side
    (each runner keeps `runner_omp_threads`, 1 by default: one core each)."""
    if "max_concurrent_stages" in settings.model_fields_set:
        return settings
    cpus = os.cpu_count() if cpus is None else cpus
    return settings.model_copy(update={"max_concurrent_stages": max(1, min(2, cpus or 1))})


def cmd_run(args: Any, out: Any) -> int:
    """Start the service in-process (127.0.0.1, port 0, SQLite under --state-dir, local
    executor), submit the spec, show live progress, print the per-round report."""
    import uuid

    from saferlhf.service.cli.client import Client, read_input
    from saferlhf.service.cli.follow import exit_code_for, final_report, watch_job
    from saferlhf.v1 import job_service_pb2 as api

    spec_yaml = read_input(args.spec)
    settings = _settings(args, {"listen_address": "127.0.0.1:0", "state_dir": args.state_dir,
                                "executor": "local"})
    settings = laptop_settings(settings.model_copy(update={"tokens_file": None,
                                                           "database_url": None}))
    with in_process(settings) as running:
        client = Client(running.address, timeout_seconds=args.timeout)
        job = client.call("CreateJob", api.CreateJobRequest(
            spec_yaml=spec_yaml, request_id=str(uuid.uuid4()))).job
        if args.output == "text":
            out.write(f"job {job.id} submitted to the in-process service at {running.address} "
                      f"(state in {settings.state_dir}); approve gates or read logs from another "
                      f"terminal with --server {running.address}\n")
        try:
            got = watch_job(client, job.id, out, args.output)
        except KeyboardInterrupt:
            client.call("CancelJob", api.CancelJobRequest(job_id=job.id, reason="interrupted"))
            raise
        if args.output == "text":
            final_report(out, got, client)
        client.close()
    return exit_code_for(got.job)
