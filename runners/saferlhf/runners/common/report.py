"""The runner's event-streaming client (DESIGN §6): sends the events the sink appends to
events.jsonl to the service's RunnerService.ReportEvents, in batches, from a background thread.

The file is the truth; streaming is best effort and must never slow down or crash training:
calling the reporter only appends to an in-memory queue; the thread sends batches, and while the
service is away (restarting, unreachable) it keeps the events and retries with exponential
backoff. The service stores events idempotently by (attempt, seq), so resending is harmless, and it
fills any gap from the file, so a dropped batch (queue overflow, exit before the flush) loses
nothing. On start the reporter also resends the events this attempt already wrote to the file
(a runner resumed inside one attempt).

Environment: SAFERLHF_EVENTS_ADDR (host:port), SAFERLHF_STAGE_TOKEN (the stage's bearer token),
SAFERLHF_ATTEMPT_ID (the attempt id the service knows), optional SAFERLHF_EVENTS_CA (PEM file:
use TLS) and SAFERLHF_EVENTS_CERT / SAFERLHF_EVENTS_KEY (PEM files: the client certificate of
mutual TLS). Imports only gRPC client code and the generated protos (never the service itself).
"""

from __future__ import annotations

import atexit
import collections
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

BATCH_SIZE = 500  # events per ReportEvents call
MAX_BUFFERED = 200_000  # events kept in memory while the service is away; older ones dropped
CALL_TIMEOUT_SECONDS = 10.0
BACKOFF_INITIAL_SECONDS = 0.2
BACKOFF_MAX_SECONDS = 10.0
FLUSH_SECONDS = 5.0  # close() waits at most this long for the queue to drain
_HEADER = ("seq", "attempt", "time", "type")


class Reporter:
    """Callable(event) that never blocks; `close()` flushes (bounded) and stops the thread."""

    def __init__(
        self, address: str, *, attempt_id: str, token: str, attempt: int = 1,
        ca_pem: bytes | None = None, client_cert: tuple[bytes, bytes] | None = None,
    ) -> None:
        """`client_cert`: (certificate chain, private key) PEM for mutual TLS."""
        import grpc
        from saferlhf.v1 import (
            resources_pb2,
            runner_service_pb2,
            runner_service_pb2_grpc,
        )

        self._grpc = grpc
        self._pb = resources_pb2
        self._rpb = runner_service_pb2
        self.address, self.attempt_id, self.attempt = address, attempt_id, attempt
        self._metadata = (("authorization", f"Bearer {token}"),)
        options = [("grpc.initial_reconnect_backoff_ms", 200),  # notice a restart quickly
                   ("grpc.max_reconnect_backoff_ms", 5000)]
        if ca_pem is not None:
            cert, key = client_cert if client_cert is not None else (None, None)
            creds = grpc.ssl_channel_credentials(ca_pem, private_key=key, certificate_chain=cert)
            channel = grpc.secure_channel(address, creds, options=options)
        else:
            channel = grpc.insecure_channel(address, options=options)
        self._channel = channel
        self._stub = runner_service_pb2_grpc.RunnerServiceStub(channel)
        self._queue: collections.deque[dict[str, Any]] = collections.deque()
        self._cond = threading.Condition()
        self._closing = False
        self._stopped = False  # permanent failure (bad token): stop streaming, keep the file
        self._in_flight = 0
        self.sent = 0  # events the service acknowledged (new or duplicate)
        self.dropped = 0  # events dropped from memory (they stay in events.jsonl)
        self._thread = threading.Thread(target=self._run, name="saferlhf-report", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # -- producer side (training thread) -------------------------------------------------------
    def __call__(self, event: dict[str, Any]) -> None:
        if self._stopped or int(event.get("attempt", self.attempt)) != self.attempt:
            return
        with self._cond:
            if len(self._queue) >= MAX_BUFFERED:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(event)
            self._cond.notify()

    def close(self, timeout: float = FLUSH_SECONDS) -> None:
        """Send what is queued (waiting at most `timeout` seconds), then stop."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while (self._queue or self._in_flight) and not self._stopped:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(timeout=min(remaining, 0.05))
            if self._queue:
                log.warning("event stream: %d events not sent before exit; the service reads "
                            "them from events.jsonl", len(self._queue))
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout=max(0.0, deadline - time.monotonic()) + 0.5)
        self._channel.close()
        atexit.unregister(self.close)

    # -- consumer side (background thread) -----------------------------------------------------
    def _run(self) -> None:
        backoff = BACKOFF_INITIAL_SECONDS
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if self._closing or self._stopped:
                    return
                batch = [self._queue.popleft() for _ in range(min(BATCH_SIZE, len(self._queue)))]
                self._in_flight = len(batch)
            outcome = self._send(batch)
            with self._cond:
                self._in_flight = 0
                if outcome == "retry":
                    self._queue.extendleft(reversed(batch))
                self._cond.notify_all()
            if outcome == "retry":
                with self._cond:  # interruptible by close()
                    self._cond.wait_for(lambda: self._closing, timeout=backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)
            else:
                backoff = BACKOFF_INITIAL_SECONDS

    def _send(self, batch: list[dict[str, Any]]) -> str:
        """"ok", "retry" (service away) or "drop" (a permanent error; the file keeps them)."""
        grpc = self._grpc
        try:
            request = self._rpb.ReportEventsRequest(
                attempt_id=self.attempt_id, events=[self._to_proto(e) for e in batch])
        except (KeyError, ValueError, TypeError) as exc:
            log.warning("event stream: cannot encode a batch (%s); dropped from the stream", exc)
            return "drop"
        try:
            self._stub.ReportEvents(request, metadata=self._metadata,
                                    timeout=CALL_TIMEOUT_SECONDS)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                log.error("event stream: the service refused the stage token (%s); streaming "
                          "stops, events stay in events.jsonl", exc.details())
                self._stopped = True
                return "drop"
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                log.warning("event stream: the service rejected a batch: %s", exc.details())
                return "drop"
            return "retry"
        except Exception:  # never let streaming kill the thread
            log.exception("event stream: unexpected error; retrying")
            return "retry"
        self.sent += len(batch)
        return "ok"

    def _to_proto(self, event: dict[str, Any]) -> Any:
        payload = {k: v for k, v in event.items() if k not in _HEADER}
        return self._pb.Event(
            seq=int(event["seq"]), attempt=int(event.get("attempt", self.attempt)),
            time=str(event.get("time", "")),
            type=self._pb.EventType.Value("EVENT_TYPE_" + str(event["type"]).upper()),
            payload_json=json.dumps(payload, separators=(",", ":"), default=str),
        )


class _NoReporter:
    """What start_reporter returns when streaming cannot start: accepts events, does nothing."""

    def __call__(self, event: dict[str, Any]) -> None:
        return None

    def close(self, timeout: float = 0.0) -> None:
        return None


def start_reporter(events_path: str | Path, attempt: int) -> Reporter | _NoReporter:
    """The sink's forwarder for this process, from the environment. Never raises: a missing
    setting or an import problem is logged and streaming is off (the file still has it all)."""
    address = os.environ.get("SAFERLHF_EVENTS_ADDR", "")
    attempt_id = os.environ.get("SAFERLHF_ATTEMPT_ID", "")
    token = os.environ.get("SAFERLHF_STAGE_TOKEN", "")
    if not (address and attempt_id and token):
        log.warning("event stream off: SAFERLHF_EVENTS_ADDR, SAFERLHF_ATTEMPT_ID and "
                    "SAFERLHF_STAGE_TOKEN must all be set")
        return _NoReporter()
    try:
        ca_path = os.environ.get("SAFERLHF_EVENTS_CA")
        ca_pem = Path(ca_path).read_bytes() if ca_path else None
        cert_path, key_path = (os.environ.get("SAFERLHF_EVENTS_CERT"),
                               os.environ.get("SAFERLHF_EVENTS_KEY"))
        client_cert = (Path(cert_path).read_bytes(), Path(key_path).read_bytes()) \
            if cert_path and key_path else None
        reporter = Reporter(address, attempt_id=attempt_id, token=token, attempt=attempt,
                            ca_pem=ca_pem, client_cert=client_cert)
    except Exception:
        log.exception("event stream off: cannot start the reporter")
        return _NoReporter()
    _resend_earlier(reporter, Path(events_path), attempt)
    return reporter


def _resend_earlier(reporter: Reporter, path: Path, attempt: int) -> None:
    """Queue the events this attempt already wrote (a runner resumed within one attempt)."""
    if not path.exists():
        return
    for line in path.read_text().splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line
        if isinstance(event, dict) and int(event.get("attempt", 1)) == attempt:
            reporter(event)
