"""The real gRPC server over the real App (store, spec loader, planner, scheduler, auth,
interceptors), in its own process, with one fake: the executor starts no runner (a fuzzed job
must not train). Used by the fuzz and auth suites so that the server's RSS, log and crashes are
its own, measured from outside.

    python -m bench.reliability.fake_server --state-dir D --info F [--tokens-file T]
        [--tls-cert C --tls-key K [--tls-client-ca CA]]

Writes `F` (JSON): the port, and for every attempt "launched" its stage token (what a runner
would get in SAFERLHF_STAGE_TOKEN), so clients can report events as that runner.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry
from saferlhf.service.execution.base import LaunchSpec, RunState, RunStatus


class RecordingExecutor:
    """A fake executor: records each attempt's stage token, keeps it "running", runs nothing."""

    name = "fake"

    def __init__(self, info: Path, port: int) -> None:
        self.info, self.port, self.metrics_port = info, port, 0
        self.tokens: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()
        self.write()

    def write(self) -> None:
        tmp = self.info.with_name(self.info.name + ".tmp")
        tmp.write_text(json.dumps({"port": self.port, "metrics_port": self.metrics_port,
                                   "attempts": self.tokens}))
        os.replace(tmp, self.info)

    def submit(self, spec: LaunchSpec) -> str:
        with self._lock:
            self.tokens[spec.attempt_id] = {"job": spec.job_id, "stage": spec.stage,
                                            "token": spec.env["SAFERLHF_STAGE_TOKEN"]}
            self.write()
        return "fake:" + spec.attempt_id

    def poll(self, handle: str) -> RunStatus:
        return RunStatus(RunState.RUNNING)

    def cancel(self, handle: str, grace_seconds: float = 10.0) -> None:
        return None

    def logs(self, handle: str, follow: bool = False) -> Iterator[str]:
        yield f"fake log of {handle}"

    def adopt(self) -> dict[str, str]:
        return {a: "fake:" + a for a in self.tokens}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--info", required=True)
    parser.add_argument("--tokens-file")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--tls-client-ca")
    parser.add_argument("--max-concurrent-stages", type=int, default=64)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from saferlhf.service.api.server import TlsFiles, create_server
    from saferlhf.service.app import build_app
    from saferlhf.service.auth import TokenAuth
    from saferlhf.service.settings import Settings

    tls = None
    if args.tls_cert:
        tls = TlsFiles(Path(args.tls_cert).read_bytes(), Path(args.tls_key).read_bytes(),
                       Path(args.tls_client_ca).read_bytes() if args.tls_client_ca else None)
    settings = Settings(state_dir=args.state_dir, tokens_file=args.tokens_file,
                        reconcile_interval_seconds=0.2,
                        max_concurrent_stages=args.max_concurrent_stages)
    registry = CollectorRegistry()
    info = Path(args.info)
    executor = RecordingExecutor(info, 0)
    app = build_app(settings, registry=registry, executor=executor)
    server, port = create_server("127.0.0.1:0", app, auth=TokenAuth(args.tokens_file),
                                 registry=registry, tls=tls)
    app.set_events_address(f"127.0.0.1:{port}")
    server.start()
    app.start()
    from saferlhf.service.metrics import serve_metrics

    metrics_server, _ = serve_metrics(registry, "127.0.0.1:0")
    executor.metrics_port = metrics_server.server_port
    executor.port = port
    executor.write()
    logging.getLogger(__name__).info("fake-executor service on 127.0.0.1:%d", port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=1).wait(2)
    app.stop()  # wakes the watchers, which end; then the store closes under nobody
    time.sleep(0.5)
    app.store.close()
    metrics_server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
