"""Pure mapping of a Job, its Pods and their Events to a `RunStatus` (DESIGN §10).

Kubernetes reports failures in several places; this module reads all of them so the scheduler
gets one state and one `FailureClass` (which drives retries):

| Kubernetes says                                        | RunStatus                         |
|--------------------------------------------------------|-----------------------------------|
| Job condition Complete                                 | SUCCEEDED                         |
| Job condition Failed, reason DeadlineExceeded          | FAILED, DEADLINE                  |
| container terminated reason OOMKilled                  | FAILED, OOM                       |
| pod status.reason Evicted (or a DisruptionTarget)      | FAILED, TRANSIENT                 |
| container terminated with exit code N                  | FAILED, `classify_exit(N)`        |
| container waiting ImagePullBackOff / InvalidImageName  | FAILED, IMAGE_PULL                |
| pod Unschedulable for longer than the grace            | FAILED, UNSCHEDULABLE             |
| Job suspended (Kueue), pods pending, ErrImagePull      | PENDING with the reason as message|

No `kubernetes` import: inputs are plain dicts (API objects as JSON, camelCase keys).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from saferlhf.service.execution.base import RunState, RunStatus, classify_exit
from saferlhf.service.state.types import FailureClass

IMAGE_PULL_FATAL = frozenset({"ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
IMAGE_PULL_FIRST = frozenset({"ErrImagePull"})


def _conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    items = (obj.get("status") or {}).get("conditions") or []
    return {c.get("type", ""): c for c in items if str(c.get("status")) == "True"}


def _unix(ts: str | None) -> float | None:
    if not ts:
        return None
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def _statuses(pod: dict[str, Any]) -> list[dict[str, Any]]:
    status = pod.get("status") or {}
    return list(status.get("initContainerStatuses") or []) + list(
        status.get("containerStatuses") or []
    )


def _pod_name(pod: dict[str, Any]) -> str:
    return (pod.get("metadata") or {}).get("name", "?")


def _pod_failure(pod: dict[str, Any]) -> RunStatus | None:
    """The failure a single pod shows, if any (terminated non-zero, evicted, OOM)."""
    status = pod.get("status") or {}
    name = _pod_name(pod)
    if status.get("reason") == "Evicted" or "DisruptionTarget" in _conditions(pod):
        msg = status.get("message") or "pod disrupted"
        return RunStatus(RunState.FAILED, None, FailureClass.TRANSIENT, f"{name}: Evicted: {msg}")
    for cs in _statuses(pod):
        term = (cs.get("state") or {}).get("terminated")
        if not term or term.get("exitCode", 0) == 0:
            continue
        code = int(term.get("exitCode"))
        reason = term.get("reason") or ""
        if reason == "OOMKilled":
            return RunStatus(RunState.FAILED, code, FailureClass.OOM,
                             f"{name}: OOMKilled (exit {code}); raise resources.memory")
        detail = f"{name}: container {cs.get('name')} exited {code}"
        if reason:
            detail += f" ({reason})"
        if term.get("message"):
            detail += f": {term['message']}"
        return RunStatus(RunState.FAILED, code, classify_exit(code), detail)
    return None


def _pod_blocker(
    pod: dict[str, Any], now: float, unschedulable_grace_seconds: float
) -> RunStatus | None:
    """Why a pending pod can't run: fatal (image pull, long unschedulable) or a PENDING note."""
    name = _pod_name(pod)
    for cs in _statuses(pod):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason") or ""
        msg = waiting.get("message") or ""
        if reason in IMAGE_PULL_FATAL:
            return RunStatus(RunState.FAILED, None, FailureClass.IMAGE_PULL,
                             f"{name}: {reason}: {msg}".rstrip(": "))
        if reason in IMAGE_PULL_FIRST or reason == "CreateContainerConfigError":
            return RunStatus(RunState.PENDING, None, FailureClass.NONE, f"{name}: {reason}: {msg}")
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "Unschedulable":
            since = _unix(cond.get("lastTransitionTime"))
            msg = f"{name}: Unschedulable: {cond.get('message', '')}".rstrip(": ")
            if since is not None and now - since >= unschedulable_grace_seconds:
                return RunStatus(RunState.FAILED, None, FailureClass.UNSCHEDULABLE, msg)
            return RunStatus(RunState.PENDING, None, FailureClass.NONE, msg)
    return None


def _warning(events: list[dict[str, Any]]) -> str:
    """The newest Warning event's reason and message (shown when nothing better is known)."""
    warnings = [e for e in events if e.get("type") == "Warning"]
    if not warnings:
        return ""
    last = max(warnings, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    return f"{last.get('reason', '')}: {last.get('message', '')}"


def job_status(
    job: dict[str, Any] | None,
    pods: list[dict[str, Any]],
    events: Sequence[dict[str, Any]] = (),
    now: float = 0.0,
    unschedulable_grace_seconds: float = 600.0,
) -> RunStatus:
    """Collapse one attempt's Job + Pods + Events into a RunStatus (table in the module doc)."""
    events = list(events)
    if job is None:
        return RunStatus(RunState.LOST, None, FailureClass.UNKNOWN, "the Job no longer exists")
    conds = _conditions(job)
    if "Complete" in conds or "SuccessCriteriaMet" in conds:
        return RunStatus(RunState.SUCCEEDED, 0, FailureClass.NONE, "")
    failed = conds.get("Failed") or conds.get("FailureTarget")
    pod_failures = [f for f in (_pod_failure(p) for p in pods) if f is not None]
    if failed is not None:
        reason = failed.get("reason", "")
        if reason == "DeadlineExceeded":
            return RunStatus(RunState.FAILED, None, FailureClass.DEADLINE,
                             f"DeadlineExceeded: {failed.get('message', '')}".rstrip(": "))
        if pod_failures:
            return _first_meaningful(pod_failures)
        msg = f"{reason}: {failed.get('message', '')}".rstrip(": ") or _warning(events)
        return RunStatus(RunState.FAILED, None, FailureClass.UNKNOWN, msg)
    if pod_failures:  # one rank failed; the Job is about to fail as a whole (backoffLimit 0)
        return _first_meaningful(pod_failures)
    blockers = [b for b in (_pod_blocker(p, now, unschedulable_grace_seconds) for p in pods) if b]
    fatal = [b for b in blockers if b.state == RunState.FAILED]
    if fatal:
        return fatal[0]
    if (job.get("spec") or {}).get("suspend") or "Suspended" in conds:
        return RunStatus(RunState.PENDING, None, FailureClass.NONE,
                         "suspended: waiting for admission by the queue (Kueue)")
    if blockers:  # e.g. one rank still pulling its image: not running as a whole yet
        return blockers[0]
    if any((p.get("status") or {}).get("phase") == "Running" for p in pods):
        return RunStatus(RunState.RUNNING, None, FailureClass.NONE, "")
    return RunStatus(RunState.PENDING, None, FailureClass.NONE, _warning(events))


def _first_meaningful(failures: list[RunStatus]) -> RunStatus:
    """Prefer a specific cause (OOM, eviction, runner exit code) over a peer's SIGTERM/KILL.

    When one rank dies the others are killed by torchrun or the Job controller; their exit codes
    (143/137) say nothing about the cause.
    """
    order = [FailureClass.OOM, FailureClass.INVALID, FailureClass.TRANSIENT,
             FailureClass.UNKNOWN, FailureClass.KILLED]
    return sorted(failures, key=lambda f: order.index(f.failure) if f.failure in order else 0)[0]
