"""Cancel during each stage kind: one job, cancelled while its next target kind runs, then
RetryJob'ed (the cancelled stages run again, resuming from their SIGTERM checkpoints), until every
kind has been cancelled once; then it must finish. At each cancel every process of every live
stage attempt — the executor's wrapper, the runner and everything in the runner's session — is
recorded by PID, and must be gone once the job is CANCELLED.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from saferlhf.v1 import job_service_pb2 as api
from saferlhf.v1 import resources_pb2 as pb

from bench.reliability.service import CHAOS_JOB, ServiceProcess, processes_under, reap

KINDS = ("sft", "reward", "cost", "ppo_lag", "evaluate", "collect")


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def alive(pid: int, start: int | None = None) -> bool:
    """The process still exists (not a zombie), and is the one started at `start` ticks."""
    fields = _stat(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    return start is None or int(fields[19]) == start


def session_members(sid: int) -> dict[int, int]:
    """pid → start ticks of every live process in session `sid` (the runner and its children:
    the executor starts each runner as a session leader)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields and fields[0] not in ("Z", "X") and int(fields[3]) == sid:
                out[int(entry.name)] = int(fields[19])
    return out


def attempt_processes(state_dir: Path, attempt_id: str) -> dict[int, int]:
    """pid → start ticks of an attempt's wrapper, runner and the runner's session."""
    d = state_dir / "local" / attempt_id.replace("/", "__")
    out: dict[int, int] = {}
    for name in ("wrapper.json", "child.json"):
        try:
            record = json.loads((d / name).read_text())
        except (OSError, ValueError):
            continue
        if record.get("start") is not None and alive(int(record["pid"]), int(record["start"])):
            out[int(record["pid"])] = int(record["start"])
        if name == "child.json":
            out.update(session_members(int(record["pid"])))
    return out


def _kind_running(got: api.GetJobResponse, kind: str) -> list[Any]:
    return [a for a in got.attempts if a.state == pb.ATTEMPT_STATE_RUNNING
            and a.stage_id.split("/", 1)[1] == kind]


def cancel_during(service: ServiceProcess, job_id: str, kind: str, *, settle_seconds: float,
                  timeout: float) -> dict[str, Any]:
    """Wait until a `kind` attempt runs (its runner started), cancel, check every PID gone."""
    def runner_started(got: api.GetJobResponse) -> bool:
        return any(_child(service, a.id) for a in _kind_running(got, kind))

    service.wait(runner_started, job_id, f"a {kind} runner to start", timeout)
    time.sleep(settle_seconds)  # let it get into its work
    got = service.get(job_id)
    pids: dict[int, int] = {}
    stages = []
    for a in got.attempts:
        if a.state in (pb.ATTEMPT_STATE_QUEUED, pb.ATTEMPT_STATE_RUNNING):
            pids.update(attempt_processes(service.state_dir, a.id))
            stages.append(a.stage_id)
    asked = time.monotonic()
    assert service.jobs is not None
    service.jobs.CancelJob(api.CancelJobRequest(job_id=job_id, reason=f"chaos: cancel {kind}"),
                           timeout=30)
    final = service.wait(lambda g: g.job.state in (pb.JOB_STATE_CANCELLED, pb.JOB_STATE_FAILED,
                                                   pb.JOB_STATE_SUCCEEDED),
                         job_id, "the job to be cancelled", timeout)
    cancel_seconds = time.monotonic() - asked
    time.sleep(0.5)
    left = sorted(pid for pid, start in pids.items() if alive(pid, start))
    return {
        "kind": kind, "stages_running": sorted(stages), "pids": len(pids),
        "pids_left": left, "job_state": pb.JobState.Name(final.job.state)[len("JOB_STATE_"):],
        "cancel_seconds": round(cancel_seconds, 1),
        "ok": final.job.state == pb.JOB_STATE_CANCELLED and not left and bool(pids),
    }


def _child(service: ServiceProcess, attempt_id: str) -> str:
    path = service.state_dir / "local" / attempt_id.replace("/", "__") / "child.json"
    try:
        return path.read_text()
    except OSError:
        return ""


def run_cancels(root: Path, kinds: tuple[str, ...] = KINDS, *, spec: str = CHAOS_JOB,
                settle_seconds: float = 2.0, timeout: float = 900.0, finish: bool = True,
                log: Any = None) -> dict[str, Any]:
    """Cancel the job once during each of `kinds` (RetryJob between); then, with `finish`,
    retry it once more and let it run to its end."""
    service = ServiceProcess(root / "state")
    trials = []
    try:
        service.start()
        job_id = service.create(spec)
        for i, kind in enumerate(kinds):
            trial = cancel_during(service, job_id, kind, settle_seconds=settle_seconds,
                                  timeout=timeout)
            trials.append(trial)
            if log:
                log(f"cancel during {kind}: {trial}")
            if finish or i < len(kinds) - 1:
                assert service.jobs is not None
                service.jobs.RetryJob(api.RetryJobRequest(job_id=job_id), timeout=30)
        final = service.wait_terminal(job_id, timeout)
    finally:
        service.stop()
    time.sleep(1.0)
    orphans = processes_under([root])
    reap(orphans)
    return {
        "kinds": list(kinds), "cancels": len(trials),
        "cancels_passed": sum(1 for t in trials if t["ok"]),
        "pids_checked": sum(t["pids"] for t in trials),
        "pids_left": sum(len(t["pids_left"]) for t in trials),
        "job_after_retries": pb.JobState.Name(final.job.state)[len("JOB_STATE_"):],
        "job_message": final.job.message,
        "orphaned_processes": sorted(orphans.values()),
        "per_cancel": trials,
    }
