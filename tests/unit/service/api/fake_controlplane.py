"""FakeControlPlane: a small in-memory implementation of saferlhf.service.controlplane.ControlPlane
for
testing the API layer without the real App. It plans nothing and runs nothing; it only keeps
jobs, stages, events and watch updates the way the protocol describes, so the servicer, auth
and CLI can be exercised through a real gRPC server. Not used outside tests.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import yaml
from prometheus_client import CollectorRegistry
from saferlhf.service.api.server import create_server
from saferlhf.service.auth import TokenAuth
from saferlhf.service.controlplane import JobView, Page, WatchUpdate
from saferlhf.service.errors import Conflict, FieldViolation, NotFound, SpecError, Unauthenticated
from saferlhf.service.state.types import (
    Attempt,
    AttemptState,
    Gate,
    GateState,
    Job,
    JobState,
    Stage,
    StoredEvent,
    Transition,
)


class FakeControlPlane:
    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._ids = itertools.count(1)
        self.jobs: dict[str, Job] = {}
        self.stages: dict[str, list[Stage]] = {}
        self.gates: dict[str, list[Gate]] = {}
        self.updates: dict[str, list[WatchUpdate]] = {}
        self.attempts: dict[str, tuple[Attempt, str]] = {}  # attempt id -> (attempt, token)
        self.events: dict[tuple[str, int], StoredEvent] = {}
        self.logs: dict[tuple[str, str], list[str]] = {}
        self.by_request: dict[str, str] = {}
        self.latest_metrics: dict[str, dict[str, dict[str, float]]] = {}  # job -> stage -> name

    # -- helpers for tests -------------------------------------------------------------------
    def add_attempt(self, job_id: str, stage_id: str, token: str) -> str:
        attempt = Attempt(id=f"{job_id}/{stage_id}/1", job_id=job_id, stage_id=stage_id,
                          number=1, state=AttemptState.RUNNING,
                          token_hash=hashlib.sha256(token.encode()).hexdigest())
        self.attempts[attempt.id] = (attempt, token)
        return attempt.id

    def set_state(self, job_id: str, state: JobState) -> None:
        with self._lock:
            job = replace(self.jobs[job_id], state=state)
            self.jobs[job_id] = job
            self._push(job_id, "job", job=job)

    def _push(self, job_id: str, kind: str, **kw: Any) -> int:
        updates = self.updates[job_id]
        cursor = len(updates) + 1
        updates.append(WatchUpdate(cursor=cursor, kind=kind, **kw))
        self._lock.notify_all()
        return cursor

    # -- ControlPlane ------------------------------------------------------------------------
    def create_job(self, spec_yaml: str, *, project: str | None, request_id: str,
                   validate_only: bool) -> Job | None:
        try:
            doc = yaml.safe_load(spec_yaml)
        except yaml.YAMLError as exc:
            line = getattr(getattr(exc, "problem_mark", None), "line", None)
            raise SpecError([FieldViolation("(document)", f"not valid YAML: {exc}",
                                            line + 1 if line is not None else None)]) from exc
        problems = []
        if not isinstance(doc, dict):
            raise SpecError([FieldViolation("(document)", "expected a mapping")])
        if doc.get("kind") != "SafeRLHFJob":
            got = doc.get("kind")
            problems.append(FieldViolation("kind", f"expected SafeRLHFJob, got {got!r}"))
        meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
        if not isinstance(meta.get("name"), str) or not meta.get("name"):
            problems.append(FieldViolation("metadata.name", "required"))
        if problems:
            raise SpecError(problems)
        if validate_only:
            return None
        with self._lock:
            if request_id and request_id in self.by_request:
                return self.jobs[self.by_request[request_id]]
            job_id = f"j-{next(self._ids):04d}"
            job = Job(id=job_id, name=meta["name"], project=project or meta.get("project")
                      or "default", spec=doc, request_id=request_id,
                      labels=dict(meta.get("labels") or {}), created_at=1000.0 + len(self.jobs))
            self.jobs[job_id] = job
            self.stages[job_id] = [Stage(id="r1/sft", job_id=job_id, round=1, kind="sft")]
            self.gates[job_id] = [Gate(id="r1/sft/0", job_id=job_id, after_stage="r1/sft",
                                       metric="train/loss", op="<=", value=1.0, on_fail="pause",
                                       state=GateState.AWAITING_APPROVAL)]
            self.updates[job_id] = []
            self._push(job_id, "job", job=job)
            if request_id:
                self.by_request[request_id] = job_id
            return job

    def get_job(self, job_id: str) -> JobView:
        if job_id not in self.jobs:
            raise NotFound(f"job {job_id!r} not found")
        return JobView(job=self.jobs[job_id], stages=tuple(self.stages[job_id]),
                       attempts=tuple(a for a, _ in self.attempts.values() if a.job_id == job_id),
                       gates=tuple(self.gates[job_id]),
                       transitions=(Transition(1000.0, "job", "", "PENDING", "Created"),),
                       latest_metrics=self.latest_metrics.get(job_id, {}))

    def list_jobs(self, *, projects: list[str] | None, filter: str, page_size: int,
                  page_token: str) -> Page:
        terms = dict(t.split("=", 1) for t in filter.split() if "=" in t)
        jobs = [j for j in sorted(self.jobs.values(), key=lambda j: j.id)
                if (projects is None or j.project in projects)
                and all(str(getattr(j, k, "")) == v for k, v in terms.items())]
        start = int(page_token or 0)
        page = jobs[start:start + page_size]
        nxt = str(start + page_size) if start + page_size < len(jobs) else ""
        return Page(jobs=tuple(page), next_page_token=nxt)

    def watch_job(self, job_id: str, *, after_cursor: int = 0) -> Iterator[WatchUpdate]:
        self.get_job(job_id)
        position = after_cursor
        while True:
            with self._lock:
                while (len(self.updates[job_id]) <= position
                       and not self.jobs[job_id].state.terminal):
                    self._lock.wait(timeout=0.2)
                pending = self.updates[job_id][position:]
                done = self.jobs[job_id].state.terminal
            for update in pending:
                position = update.cursor
                yield update
            if done and position >= len(self.updates[job_id]):
                return

    def cancel_job(self, job_id: str, reason: str = "") -> Job:
        job = self.get_job(job_id).job
        if job.state.terminal:
            raise Conflict(f"job {job_id} already {job.state.value}; nothing to cancel")
        self.set_state(job_id, JobState.CANCELLED)
        return self.jobs[job_id]

    def retry_job(self, job_id: str) -> Job:
        job = self.get_job(job_id).job
        if job.state not in (JobState.FAILED, JobState.CANCELLED):
            raise Conflict(f"job {job_id} is {job.state.value}; only failed/cancelled jobs retry")
        self.set_state(job_id, JobState.RUNNING)
        return self.jobs[job_id]

    def approve_gate(self, job_id: str, gate_id: str, *, approve: bool, comment: str = "") -> Gate:
        for i, gate in enumerate(self.get_job(job_id).gates):
            if gate.id == gate_id:
                if gate.state != GateState.AWAITING_APPROVAL:
                    raise Conflict(f"gate {gate_id} is {gate.state.value}, not awaiting approval")
                new = replace(gate, state=GateState.APPROVED if approve else GateState.REJECTED,
                              message=comment)
                self.gates[job_id][i] = new
                return new
        raise NotFound(f"gate {gate_id!r} not found in job {job_id}")

    def stage_logs(self, job_id: str, stage_id: str, *, follow: bool) -> Iterator[str]:
        self.get_job(job_id)
        yield from self.logs.get((job_id, stage_id), [])

    def export_samples(self, job_id: str, round: int) -> tuple[str, bytes]:
        self.get_job(job_id)
        return f"{job_id}-r{round}-samples.jsonl", b'{"prompt": "p", "responses": ["a", "b"]}\n'

    def import_labels(self, job_id: str, round: int, content: bytes) -> Job:
        for i, line in enumerate(content.decode().splitlines(), start=1):
            if "better" not in line:
                raise SpecError([FieldViolation(f"labels row {i}: better", "required")])
        return self.get_job(job_id).job

    def report_events(self, attempt_id: str, token: str, events: list[dict[str, Any]]) -> int:
        if attempt_id not in self.attempts or self.attempts[attempt_id][1] != token:
            raise Unauthenticated("stage token does not match this attempt")
        attempt = self.attempts[attempt_id][0]
        new = 0
        with self._lock:
            for e in events:
                key = (attempt_id, int(e["seq"]))
                if key in self.events:
                    continue
                cursor = len(self.updates[attempt.job_id]) + 1
                stored = StoredEvent(job_id=attempt.job_id, attempt_id=attempt_id,
                                     stage_id=attempt.stage_id, seq=int(e["seq"]), type=e["type"],
                                     time=e["time"], payload=dict(e), cursor=cursor)
                self.events[key] = stored
                self._push(attempt.job_id, "event", event=stored)
                new += 1
        return new


@contextlib.contextmanager
def running_server(app: Any, auth: TokenAuth | None = None,
                   registry: CollectorRegistry | None = None) -> Iterator[tuple[str, Any]]:
    """A real gRPC server on 127.0.0.1:0 over `app`; yields (address, registry)."""
    registry = registry or CollectorRegistry()
    server, port = create_server("127.0.0.1:0", app, auth=auth or TokenAuth(None),
                                 registry=registry)
    server.start()
    try:
        yield f"127.0.0.1:{port}", registry
    finally:
        server.stop(grace=None)
