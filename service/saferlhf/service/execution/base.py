"""The executor interface (DESIGN §10): how the scheduler runs one stage attempt somewhere.

Two implementations: `local.LocalExecutor` (subprocess per attempt, its own session) and
`kubernetes.KubernetesExecutor` (a batch/v1 Job per attempt). The scheduler only sees this file.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from saferlhf.service.state.types import FailureClass, Resources


@dataclass(frozen=True)
class LaunchSpec:
    """Everything needed to start one stage attempt; built by the scheduler from the store."""

    attempt_id: str  # unique; also the handle's key for adoption
    job_id: str
    job_name: str
    project: str
    round: int
    stage: str  # stage id, e.g. "r1/sft"
    kind: str  # runner kind: python -m saferlhf.runners.<kind>
    attempt: int  # 1-based attempt number
    config_path: str  # stage.json (inside the artifacts root)
    output_dir: str
    env: Mapping[str, str] = field(default_factory=dict)  # SAFERLHF_* and HF_HUB_OFFLINE …
    # env var -> (Secret name, key) set from a user's Secret (Kubernetes only; e.g. a judge's API
    # key): the value never passes through the service. Locally the service's own env holds it.
    secret_env: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)
    image: str = ""  # Kubernetes only
    log_path: str = ""  # local only: where stage.log goes (default output_dir/stage.log)


class RunState(enum.StrEnum):
    PENDING = "PENDING"  # accepted, not running yet (queued, suspended, pulling image)
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    LOST = "LOST"  # the executor no longer knows this handle


@dataclass(frozen=True)
class RunStatus:
    state: RunState
    exit_code: int | None = None
    failure: FailureClass = FailureClass.NONE
    message: str = ""


def classify_exit(exit_code: int | None) -> FailureClass:
    """The runner contract's exit codes → failure classes (DESIGN §5)."""
    if exit_code is None:
        return FailureClass.UNKNOWN
    if exit_code == 0:
        return FailureClass.NONE
    if exit_code == 2:
        return FailureClass.INVALID
    if exit_code == 75:
        return FailureClass.TRANSIENT
    if exit_code == 74:
        return FailureClass.STORAGE
    if exit_code in (137, -9):
        return FailureClass.KILLED
    if exit_code in (143, -15):
        return FailureClass.KILLED
    return FailureClass.UNKNOWN


class Executor(Protocol):
    name: str

    def submit(self, spec: LaunchSpec) -> str:
        """Start the attempt; returns a handle that `poll`/`cancel`/`logs` accept. Idempotent on
        `spec.attempt_id`: submitting the same attempt twice returns the existing handle."""
        ...

    def poll(self, handle: str) -> RunStatus: ...

    def cancel(self, handle: str, grace_seconds: float = 10.0) -> None:
        """SIGTERM (or delete with foreground propagation), then SIGKILL after the grace."""
        ...

    def logs(self, handle: str, follow: bool = False) -> Iterator[str]: ...

    def adopt(self) -> dict[str, str]:
        """After a service restart: attempt_id → handle for every attempt still known to the
        executor (live processes by pid file, Jobs by their saferlhf.dev labels)."""
        ...
