"""The event sink (DESIGN §6): the one place a runner writes events and its result.

Every event is appended to `output_dir/events.jsonl` (durable) with a per-attempt `seq` and an ISO
`time`; when SAFERLHF_EVENTS_ADDR is set, the same events are also handed to a streaming reporter
(`saferlhf.runners.common.report`) that sends them to the service and retries while it is away.
Only rank 0
writes: other ranks get a sink whose methods do nothing.

The attempt number comes from SAFERLHF_ATTEMPT (default 1). On start the sink reads the file and
continues `seq` after the last event of the same attempt, so a runner restarted inside one attempt
never reuses a sequence number.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

EVENT_TYPES = ("metrics", "progress", "checkpoint", "artifact", "result", "log")


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def read_events(path: str | Path) -> list[dict[str, Any]]:
    """All events of a file; a torn last line (crash mid-write) is skipped."""
    out: list[dict[str, Any]] = []
    p = Path(path)
    if not p.exists():
        return out
    for line in p.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _end_torn_line(path: Path) -> None:
    """A process killed mid-write (or a full disk) can leave a last line without its newline;
    the next attempt's first event would be glued onto it and lost with it. End it first."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                return
            f.seek(-1, os.SEEK_END)
            torn = f.read(1) != b"\n"
    except FileNotFoundError:
        return
    if torn:
        with path.open("a") as f:
            f.write("\n")


class EventSink:
    def __init__(
        self,
        output_dir: str | Path,
        *,
        enabled: bool = True,
        attempt: int | None = None,
        clock: Callable[[], str] = _now_iso,
        forward: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.enabled = enabled
        self.output_dir = Path(output_dir)
        self.path = self.output_dir / "events.jsonl"
        if attempt is None:
            attempt = int(os.environ.get("SAFERLHF_ATTEMPT", "1"))
        self.attempt = attempt
        self._clock = clock
        self._lock = threading.Lock()
        self._forward = forward
        self._seq = 0
        if not enabled:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        _end_torn_line(self.path)
        for event in read_events(self.path):
            if event.get("attempt", 1) == self.attempt:
                self._seq = max(self._seq, int(event.get("seq", 0)))
        if self._forward is None and os.environ.get("SAFERLHF_EVENTS_ADDR"):
            from saferlhf.runners.common.report import (
                start_reporter,  # lazy: grpc only when streaming
            )

            self._forward = start_reporter(self.path, self.attempt)

    # -- typed helpers -----------------------------------------------------------------------
    def metrics(self, step: int, values: Mapping[str, float]) -> None:
        self.emit("metrics", step=step, values={k: float(v) for k, v in values.items()})

    def progress(self, step: int, total_steps: int) -> None:
        self.emit("progress", step=step, total_steps=total_steps)

    def checkpoint(self, step: int, path: str | Path) -> None:
        self.emit("checkpoint", step=step, path=str(path))

    def artifact(self, name: str, path: str | Path) -> None:
        self.emit("artifact", name=name, path=str(path))

    def log(self, message: str, level: str = "info") -> None:
        self.emit("log", level=level, message=message)

    def result(self, values: Mapping[str, Any]) -> None:
        """Final values: written to result.json (atomically) and emitted as a `result` event."""
        if not self.enabled:
            return
        tmp = self.output_dir / "result.json.tmp"
        tmp.write_text(json.dumps(dict(values), indent=2, sort_keys=True))
        tmp.replace(self.output_dir / "result.json")
        self.emit("result", values=dict(values))

    # -- core --------------------------------------------------------------------------------
    def emit(self, type_: str, **fields: Any) -> dict[str, Any] | None:
        if type_ not in EVENT_TYPES:
            raise ValueError(f"unknown event type {type_!r}; expected one of {EVENT_TYPES}")
        if not self.enabled:
            return None
        with self._lock:
            self._seq += 1
            event = {
                "seq": self._seq, "attempt": self.attempt, "time": self._clock(), "type": type_,
            }
            event.update(fields)
            with self.path.open("a") as f:
                f.write(json.dumps(event) + "\n")
                f.flush()
        if self._forward is not None:
            try:
                self._forward(event)
            except Exception:  # streaming must never break training; the file is the truth
                log.exception("event forwarding failed; events stay in %s", self.path)
        return event

    def close(self) -> None:
        close = getattr(self._forward, "close", None)
        if callable(close):
            close()
