"""The control plane's domain API: what the gRPC servicer calls (STYLE rule 10: thin servicer).

`saferlhf.service.app.App` implements it over the store, planner and scheduler; the servicer
converts
protos to these calls and back. Every method raises only `saferlhf.service.errors.ServiceError`s.
Authorization is done by the caller-facing layer before these calls, with `Principal`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from saferlhf.service.state.types import Attempt, Gate, Job, Stage, StoredEvent, Transition


@dataclass(frozen=True)
class Principal:
    """Who is calling. `projects` maps project → role (read < write < admin); "*" = all projects."""

    name: str
    projects: dict[str, str] = field(default_factory=dict)

    def role_in(self, project: str) -> str | None:
        return self.projects.get(project) or self.projects.get("*")


@dataclass(frozen=True)
class JobView:
    """A job with everything Get/Watch shows."""

    job: Job
    stages: tuple[Stage, ...]
    attempts: tuple[Attempt, ...]
    gates: tuple[Gate, ...]
    transitions: tuple[Transition, ...]
    latest_metrics: dict[str, dict[str, float]]  # stage id -> metric name -> last value


@dataclass(frozen=True)
class WatchUpdate:
    """One WatchJob message. `cursor` strictly increases per job; resume with `after_cursor`."""

    cursor: int
    kind: str  # "job" | "stage" | "event" | "gate"
    job: Job | None = None
    stage: Stage | None = None
    gate: Gate | None = None
    event: StoredEvent | None = None


@dataclass(frozen=True)
class Page:
    jobs: tuple[Job, ...]
    next_page_token: str


class ControlPlane(Protocol):
    def create_job(
        self, spec_yaml: str, *, project: str | None, request_id: str, validate_only: bool
    ) -> Job | None:
        """Validate (raising SpecError with every violation) and, unless validate_only, store
        and plan the job. A repeated request_id returns the job created the first time."""
        ...

    def get_job(self, job_id: str) -> JobView: ...

    def list_jobs(
        self, *, projects: list[str] | None, filter: str, page_size: int, page_token: str
    ) -> Page:
        """filter: space-separated `key=value` terms over state, project, name, label.<k>."""
        ...

    def watch_job(self, job_id: str, *, after_cursor: int = 0) -> Iterator[WatchUpdate]:
        """Replay updates after `after_cursor`, then follow live ones until the job ends."""
        ...

    def cancel_job(self, job_id: str, reason: str = "") -> Job: ...

    def retry_job(self, job_id: str) -> Job:
        """Re-run from the failed stage(s); finished stages keep their outputs."""
        ...

    def approve_gate(self, job_id: str, gate_id: str, *, approve: bool, comment: str = "") -> Gate:
        ...

    def stage_logs(self, job_id: str, stage_id: str, *, follow: bool) -> Iterator[str]: ...

    def export_samples(self, job_id: str, round: int) -> tuple[str, bytes]:
        """(filename, content) of the unlabelled pairs of a round awaiting labels."""
        ...

    def import_labels(self, job_id: str, round: int, content: bytes) -> Job:
        """Validate (SpecError naming row and field) and store labels; resumes the round."""
        ...

    def report_events(self, attempt_id: str, token: str, events: list[dict[str, Any]]) -> int:
        """Store runner events idempotently by (attempt, seq); returns how many were new.
        Raises Unauthenticated unless `token` is this attempt's stage token."""
        ...
