"""Domain state of the control plane (DESIGN §7): frozen dataclasses, no I/O, no proto types.

The store persists exactly these; the scheduler moves them through the transitions in
`saferlhf.service.state.transitions`; the API converts them to protos in
`saferlhf.service.api.convert`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


class JobState(enum.StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"  # a gate awaiting approval, or labels awaited (AWAITING_LABELS reason)
    CANCELLING = "CANCELLING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class AttemptState(enum.StrEnum):
    PENDING = "PENDING"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    SKIPPED = "SKIPPED"

    @property
    def terminal(self) -> bool:
        return self in (
            AttemptState.SUCCEEDED, AttemptState.FAILED, AttemptState.CANCELLED,
            AttemptState.SKIPPED,
        )


class FailureClass(enum.StrEnum):
    """Why an attempt failed; drives retries (kopf-style taxonomy)."""

    NONE = "NONE"
    INVALID = "INVALID"  # exit 2: permanent, never retried
    TRANSIENT = "TRANSIENT"  # exit 75, lost node, evicted: retry
    OOM = "OOM"  # OOMKilled / exit 137 with memory pressure: retry (maybe with a hint)
    KILLED = "KILLED"  # SIGKILL/SIGTERM from outside
    HUNG = "HUNG"  # no event for N minutes: cancelled by the stall detector, retried
    UNSCHEDULABLE = "UNSCHEDULABLE"
    IMAGE_PULL = "IMAGE_PULL"  # permanent until the spec changes
    DEADLINE = "DEADLINE"
    STORAGE = "STORAGE"  # exit 74: outputs cannot be written (disk full, read-only): retried
    UNKNOWN = "UNKNOWN"

    @property
    def retryable(self) -> bool:
        return self not in (FailureClass.INVALID, FailureClass.IMAGE_PULL, FailureClass.NONE)


class GateState(enum.StrEnum):
    PENDING = "PENDING"
    PASSED = "PASSED"
    FAILED = "FAILED"
    AWAITING_APPROVAL = "AWAITING_APPROVAL"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    ESCALATED = "ESCALATED"  # an `escalate` gate missed: the stages after it run (not a failure)


@dataclass(frozen=True)
class Transition:
    """One stored state change, shown by Get/Watch."""

    at: float  # unix seconds (from the injected clock)
    subject: str  # "job" | "<stage id>" | "gate:<id>"
    from_state: str
    to_state: str
    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class Attempt:
    id: str  # globally unique, e.g. "<job id>/<stage id>/<n>"
    job_id: str
    stage_id: str  # e.g. "r1/sft", "r2/ppo_lag"
    number: int  # 1, 2, …
    state: AttemptState = AttemptState.PENDING
    handle: str = ""  # executor handle (pid/pgid, or the Kubernetes Job name)
    exit_code: int | None = None
    failure: FailureClass = FailureClass.NONE
    message: str = ""
    token_hash: str = ""  # sha256 of the stage token (RunnerService auth)
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    last_event_at: float | None = None
    not_before: float | None = None  # backoff: do not launch before this time


@dataclass(frozen=True)
class Stage:
    """One node of the plan: a runner kind in one round."""

    id: str  # "r<round>/<kind>", e.g. "r2/reward"
    job_id: str
    round: int
    kind: str  # sft | reward | cost | ppo_lag | evaluate | collect
    depends_on: tuple[str, ...] = ()
    state: AttemptState = AttemptState.PENDING
    config: dict[str, Any] = field(default_factory=dict)  # resolved stage.json
    output_dir: str = ""
    attempts: int = 0  # attempts made so far (retry budget is counted here, in the store)
    skipped_with: str | None = None  # `use:` path when the user gave the output instead
    progress: float = 0.0  # 0–1, from progress events
    result: dict[str, Any] = field(default_factory=dict)
    # Retry and stall policy from the plan (E2, additive): attempts allowed per budget, the
    # exponential backoff base and cap, and the stall window (None: the service default).
    max_attempts: int = 1
    backoff_seconds: float = 30.0
    backoff_max_seconds: float = 600.0
    stall_minutes: float | None = None
    resources: dict[str, Any] = field(default_factory=dict)  # nodes, nproc_per_node, cpu, …
    timeout_minutes: float | None = None  # a running attempt past this is cancelled (DEADLINE)


ESCALATE = "escalate"  # Gate.on_fail that runs the stages after it (the escalation branch)
# instead of failing the job; when such a gate passes those stages are skipped as not needed.


@dataclass(frozen=True)
class Gate:
    id: str  # e.g. "r1/cost/0"
    job_id: str
    after_stage: str  # stage id
    metric: str
    op: str  # one of < <= > >= == !=
    value: float
    on_fail: str = "fail"  # fail | pause | escalate
    state: GateState = GateState.PENDING
    observed: float | None = None
    message: str = ""


@dataclass(frozen=True)
class Job:
    id: str  # server-assigned, e.g. "j-20261127-ab12cd"
    name: str
    project: str
    spec: dict[str, Any]  # the validated spec, as loaded (for display and retry)
    state: JobState = JobState.PENDING
    request_id: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0
    finished_at: float | None = None
    message: str = ""
    conditions: dict[str, str] = field(default_factory=dict)  # e.g. VacuousThreshold -> message


@dataclass(frozen=True)
class StoredEvent:
    """A runner event as stored: unique by (attempt_id, seq). `cursor` orders all of a job's
    events and watch updates (WatchJob resumes from it)."""

    job_id: str
    attempt_id: str
    stage_id: str
    seq: int
    type: str
    time: str
    payload: dict[str, Any]
    cursor: int = 0



@dataclass(frozen=True)
class Resources:
    """What one stage attempt runs on (from the spec's `resources`; the executors map it)."""

    nodes: int = 1
    nproc_per_node: int = 1  # processes per node (torchrun when nodes*nproc > 1)
    gpus_per_node: int = 0
    cpu: str = "2"
    memory: str = "8Gi"
    shm_size: str = "1Gi"
    gpu_memory: str | None = None  # memory of one GPU (the memory planner's budget)

def last_metric_values(events: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """The last numeric value of each key over the `metrics` and `result` events, in order
    (booleans and non-numbers are not metric values). What the store's latest-metrics table and
    the Prometheus gauges both keep."""
    merged: dict[str, Any] = {}
    for event in events:
        if event.get("type") in ("metrics", "result") and event.get("values"):
            merged.update(event["values"])  # at C speed: the last value of each key wins
    out = {}
    for k, v in merged.items():
        if type(v) in (int, float):
            try:
                out[k] = float(v)
            except OverflowError:  # an int beyond float range is no metric value either
                continue
    return out
