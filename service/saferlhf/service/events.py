"""Runner event ingestion (DESIGN §6) and the per-job notifier behind WatchJob.

Events arrive two ways: streamed by the runner (`ReportEvents`, source "stream") and read back from
the attempt's `events.jsonl` (source "file": gap filling when an attempt ends and after a service
restart). Both go through `EventIngestor.ingest`, which stores them idempotently by
(attempt, seq) — so an event seen both ways is stored once — and only then updates the attempt's
liveness, the stage's progress, the job's guard conditions and the Prometheus gauges.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from saferlhf.runners.common.events import EVENT_TYPES, read_events
from saferlhf.service.controlplane import WatchUpdate
from saferlhf.service.errors import FieldViolation, SpecError
from saferlhf.service.state.types import (
    Attempt,
    AttemptState,
    GateState,
    Job,
    JobState,
    Stage,
    StoredEvent,
)

log = logging.getLogger(__name__)

GUARD_CONDITIONS = ("VacuousThreshold", "LambdaPinned", "LambdaBelowBreakEven")


class JobNotifier:
    """Wakes WatchJob streams when a job's stored history grows: one condition variable, a
    version counter per job, no polling. `close()` wakes everyone for shutdown."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._versions: dict[str, int] = {}
        self.closed = False

    def notify(self, job_ids: Iterable[str]) -> None:
        with self._cond:
            for job_id in job_ids:
                self._versions[job_id] = self._versions.get(job_id, 0) + 1
            self._cond.notify_all()

    def version(self, job_id: str) -> int:
        with self._cond:
            return self._versions.get(job_id, 0)

    def wait(self, job_id: str, seen: int, timeout: float) -> bool:
        """Block until the job's version moves past `seen` (True) or the timeout (False)."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self.closed or self._versions.get(job_id, 0) != seen, timeout
            )

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class EventStore(Protocol):
    def add_events(self, job_id: str, attempt_id: str, stage_id: str,
                   events: Sequence[dict[str, Any]]) -> list[StoredEvent]: ...

    def update_attempt(self, attempt_id: str, *, at: float, **fields: Any) -> Attempt: ...

    def update_stage(self, job_id: str, stage_id: str, *, at: float, **fields: Any) -> Stage: ...

    def get_job(self, job_id: str) -> Job: ...

    def update_job(self, job_id: str, *, at: float, **fields: Any) -> Job: ...


class MetricsSink(Protocol):
    def observe_events(self, *, job_id: str, project: str, round: int, kind: str,
                       events: Sequence[Mapping[str, Any]], now: float) -> None: ...

    def events_received(self, source: str, n: int) -> None: ...


def validate_event(raw: Any, index: int, attempt_number: int) -> dict[str, Any]:
    """Check one event of the runner contract; SpecError names `events[i].<field>`."""
    where = f"events[{index}]"
    if not isinstance(raw, dict):
        got = type(raw).__name__
        raise SpecError([FieldViolation(where, f"expected a JSON object, got {got}")])
    violations = []
    seq = raw.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        violations.append(FieldViolation(f"{where}.seq", f"expected an integer >= 1, got {seq!r}"))
    if raw.get("type") not in EVENT_TYPES:
        violations.append(FieldViolation(
            f"{where}.type", f"expected one of {', '.join(EVENT_TYPES)}, got {raw.get('type')!r}"))
    attempt = raw.get("attempt", attempt_number)
    if attempt != attempt_number:
        violations.append(FieldViolation(
            f"{where}.attempt", f"expected {attempt_number} (this stage token's attempt), "
            f"got {attempt!r}"))
    values = raw.get("values")
    if values is not None and not isinstance(values, dict):
        violations.append(FieldViolation(f"{where}.values", "expected an object of name: number"))
    # Numbers the service computes with (progress ratio, the step gauge): a string, a bool, an
    # int beyond float range or a zero total made ingestion fail after the events were stored.
    for name in ("step", "total_steps"):
        number = _finite_number(raw[name]) if name in raw else 0.0
        if number is None or abs(number) >= 2**63:
            violations.append(FieldViolation(f"{where}.{name}", f"expected a finite number "
                                             f"within ±2^63, got {raw[name]!r:.80}"))
    if raw.get("type") == "progress":
        total = _finite_number(raw.get("total_steps"))
        if total is None or total <= 0:
            got = f"{raw.get('total_steps')!r:.80}"
            violations.append(FieldViolation(f"{where}.total_steps",
                                             f"a progress event needs total_steps > 0, got {got}"))
    if violations:
        raise SpecError(violations, "invalid runner events:\n  " + "\n  ".join(
            f"{v.field}: {v.description}" for v in violations))
    return raw


def _finite_number(value: Any) -> float | None:
    """`value` as a finite float, or None if it is not a real number (bools are not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


class EventIngestor:
    def __init__(
        self, store: EventStore, clock: Callable[[], float], metrics: MetricsSink | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.metrics = metrics

    def ingest(
        self, job: Job, stage: Stage, attempt: Attempt, events: Sequence[dict[str, Any]],
        source: str,
    ) -> list[StoredEvent]:
        """Validate (streams) and store; returns the events that were new."""
        events = [validate_event(e, i, attempt.number) for i, e in enumerate(events)]
        new = self.store.add_events(job.id, attempt.id, stage.id, events)
        if not new:
            return new
        now = self.clock()
        self.store.update_attempt(attempt.id, at=now, last_event_at=now)
        progress = [e for e in new if e.type == "progress" and e.payload.get("total_steps")]
        if progress:
            last = max(progress, key=lambda e: e.seq)
            ratio = float(last.payload.get("step", 0)) / float(last.payload["total_steps"])
            if math.isfinite(ratio):
                self.store.update_stage(job.id, stage.id, at=now,
                                        progress=max(0.0, min(1.0, ratio)))
        conditions = {}
        for e in new:
            message = str(e.payload.get("message", ""))
            name = message.split(":", 1)[0]
            if e.type == "log" and e.payload.get("level") == "warning" and name in GUARD_CONDITIONS:
                conditions[name] = message
        if conditions:
            current = self.store.get_job(job.id)
            self.store.update_job(job.id, at=now, conditions={**current.conditions, **conditions})
        if self.metrics is not None:
            self.metrics.observe_events(
                job_id=job.id, project=job.project, round=stage.round, kind=stage.kind,
                events=[{"type": e.type, **e.payload} for e in new], now=now)
            self.metrics.events_received(source, len(new))
        return new

    def fill_from_file(self, job: Job, stage: Stage, attempt: Attempt) -> list[StoredEvent]:
        """Store the attempt's events from its events.jsonl that the stream did not deliver."""
        path = Path(stage.output_dir) / "events.jsonl"
        events = [e for e in read_events(path)
                  if isinstance(e, dict) and e.get("attempt", 1) == attempt.number]
        good = []
        for i, e in enumerate(events):
            try:
                good.append(validate_event(e, i, attempt.number))
            except SpecError as exc:
                log.warning("skipping a malformed event in %s: %s", path, exc.message)
        return self.ingest(job, stage, attempt, good, "file")


def updates_after(store: Any, job_id: str, cursor: int, limit: int = 1000) -> list[WatchUpdate]:
    """Stored history after `cursor` as watch updates, in cursor order."""
    transitions = store.transitions(job_id, cursor)[:limit]
    events = store.events(job_id, cursor, limit)
    if not transitions and not events:
        return []
    job = store.get_job(job_id)
    stages = {s.id: s for s in store.list_stages(job_id)}
    gates = {g.id: g for g in store.list_gates(job_id)}
    out = [WatchUpdate(cursor=e.cursor, kind="event", event=e) for e in events]
    for c, t in transitions:
        if t.subject == "job":
            out.append(WatchUpdate(c, "job", job=replace(
                job, state=JobState(t.to_state), message=t.message or job.message)))
        elif t.subject.startswith("gate:"):
            gate = gates.get(t.subject[len("gate:"):])
            if gate is not None:
                out.append(WatchUpdate(c, "gate", gate=replace(
                    gate, state=GateState(t.to_state))))
        else:
            stage_id, _, attempt = t.subject.partition("#")
            stage = stages.get(stage_id)
            if stage is not None:
                if not attempt:
                    stage = replace(stage, state=AttemptState(t.to_state))
                out.append(WatchUpdate(c, "stage", stage=stage))
    out.sort(key=lambda u: u.cursor)
    # A source that hit the limit may have more below the other's cursors: stop there.
    bounds = []
    if len(transitions) >= limit:
        bounds.append(transitions[-1][0])
    if len(events) >= limit:
        bounds.append(events[-1].cursor)
    if bounds:
        out = [u for u in out if u.cursor <= min(bounds)]
    return out
