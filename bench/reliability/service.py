"""The real service as a separate process (`python -m saferlhf.service serve`), killed with SIGKILL
and restarted on the same state, and the audit of a job after it: terminal state, events lost and
doubled (the store, read back over WatchJob, against each runner's events.jsonl, by attempt and
sequence number), the attempts that were live at the kill (adopted, or rerun), orphaned processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from saferlhf.v1 import job_service_pb2 as api
from saferlhf.v1 import job_service_pb2_grpc as api_grpc
from saferlhf.v1 import resources_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]
CHAOS_JOB = (Path(__file__).parent / "chaos_job.yaml").read_text()
TERMINAL = (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED)
LIVE = (pb.ATTEMPT_STATE_QUEUED, pb.ATTEMPT_STATE_RUNNING)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServiceProcess:
    """`saferlhf serve` on 127.0.0.1:<port> over `state_dir` (SQLite, local executor)."""

    def __init__(self, state_dir: Path, *, env: dict[str, str] | None = None,
                 port: int | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log = self.state_dir / "service.log"
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
                    "SAFERLHF_LOG_LEVEL": "INFO", "SAFERLHF_MAX_CONCURRENT_STAGES": "2",
                    **(env or {})}
        for var in ("SAFERLHF_EVENTS_ADDR", "SAFERLHF_STAGE_TOKEN", "SAFERLHF_ATTEMPT_ID"):
            self.env.pop(var, None)
        self.proc: subprocess.Popen | None = None
        self.channel: grpc.Channel | None = None
        self.jobs: api_grpc.JobServiceStub | None = None
        self.starts = 0

    def start(self, timeout: float = 120.0) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "saferlhf.service", "serve", "--listen", self.address,
                 "--state-dir", str(self.state_dir), "--metrics-address", "127.0.0.1:0"],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        self.channel = grpc.insecure_channel(self.address)
        grpc.channel_ready_future(self.channel).result(timeout=timeout)
        self.jobs = api_grpc.JobServiceStub(self.channel)
        self.starts += 1

    def kill(self) -> None:
        """SIGKILL: no handler, no flush, no goodbye (its runners live on)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        if self.channel is not None:
            self.channel.close()
        self.channel = self.jobs = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        if self.channel is not None:
            self.channel.close()
        self.channel = self.jobs = None

    # ---- calls ------------------------------------------------------------------------------
    def create(self, spec_yaml: str = CHAOS_JOB, request_id: str = "") -> str:
        assert self.jobs is not None
        return self.jobs.CreateJob(api.CreateJobRequest(spec_yaml=spec_yaml,
                                                        request_id=request_id),
                                   timeout=60).job.id

    def get(self, job_id: str) -> api.GetJobResponse:
        assert self.jobs is not None
        return self.jobs.GetJob(api.GetJobRequest(job_id=job_id), timeout=30)

    def wait(self, probe: Callable[[api.GetJobResponse], bool], job_id: str, what: str,
             timeout: float) -> api.GetJobResponse:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.get(job_id)
            if probe(got):
                return got
            time.sleep(0.25)
        raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")

    def wait_terminal(self, job_id: str, timeout: float) -> api.GetJobResponse:
        return self.wait(lambda g: g.job.state in TERMINAL, job_id, "the job to end", timeout)

    def updates(self, job_id: str) -> list:
        assert self.jobs is not None
        return list(self.jobs.WatchJob(api.WatchJobRequest(job_id=job_id), timeout=300))

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


# ---- the audit --------------------------------------------------------------------------------


@dataclass
class EventAudit:
    in_files: int = 0  # events the runners wrote (events.jsonl, all attempts)
    stored: int = 0  # events the store returned (WatchJob)
    lost: list[tuple[str, int]] = field(default_factory=list)  # in a file, not stored
    doubled: list[tuple[str, int]] = field(default_factory=list)  # stored more than once
    unknown: list[tuple[str, int]] = field(default_factory=list)  # stored, in no file
    differing: list[tuple[str, int]] = field(default_factory=list)  # stored ≠ the file's


def audit_events(service: ServiceProcess, job: api.GetJobResponse) -> EventAudit:
    """Store (by WatchJob) against every runner's events.jsonl, by (attempt, seq)."""
    audit = EventAudit()
    stored: dict[tuple[str, int], dict[str, Any]] = {}
    for update in service.updates(job.job.id):
        if update.WhichOneof("update") != "event":
            continue
        e = update.event
        key = (e.attempt_id, e.seq)
        audit.stored += 1
        if key in stored:
            audit.doubled.append(key)
        stored[key] = {**json.loads(e.payload_json), "seq": e.seq, "attempt": e.attempt,
                       "time": e.time, "type": pb.EventType.Name(e.type)[11:].lower()}
    ids = {(a.stage_id, a.number): a.id for a in job.attempts}
    in_files: dict[tuple[str, int], dict[str, Any]] = {}
    for stage in job.stages:
        path = Path(stage.output_dir) / "events.jsonl"
        if not path.exists() or not stage.output_dir:
            continue
        for line in path.read_text().splitlines():
            try:
                e = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn line: never an event
            attempt_id = ids.get((stage.id, int(e.get("attempt", 1))))
            if attempt_id is not None:
                in_files[(attempt_id, int(e["seq"]))] = e
    audit.in_files = len(in_files)
    audit.lost = sorted(set(in_files) - set(stored))
    audit.unknown = sorted(set(stored) - set(in_files))
    audit.differing = sorted(k for k in set(in_files) & set(stored) if in_files[k] != stored[k])
    return audit


def processes_under(paths: Iterable[Path]) -> dict[int, str]:
    """pid → command line of every process whose command line names one of `paths` (the
    trial's state and artifacts folders: its wrappers and runners), this process excluded."""
    needles = [str(p) for p in paths]
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(n in cmd for n in needles) and "saferlhf.service" not in cmd:
            out[int(entry.name)] = cmd.strip()
    return out


def reap(pids: Iterable[int]) -> None:
    """SIGKILL processes found orphaned (the audit counted them), so none is left behind."""
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def live_attempts(job: api.GetJobResponse) -> list[tuple[str, str, int]]:
    """(attempt id, stage id, number) of the attempts queued or running."""
    return [(a.id, a.stage_id, a.number) for a in job.attempts if a.state in LIVE]


def attempt_fates(job: api.GetJobResponse, live: list[tuple[str, str, int]]) -> dict[str, str]:
    """For each attempt live at the kill: "adopted" (it went on and succeeded under the new
    service), "rerun" (it failed and a later attempt of its stage ran), or its end state."""
    by_id = {a.id: a for a in job.attempts}
    out = {}
    for attempt_id, stage_id, number in live:
        a = by_id.get(attempt_id)
        later = [x for x in job.attempts if x.stage_id == stage_id and x.number > number]
        if a is not None and a.state == pb.ATTEMPT_STATE_SUCCEEDED and not later:
            out[attempt_id] = "adopted"
        elif later:
            out[attempt_id] = "rerun"
        else:
            out[attempt_id] = pb.AttemptState.Name(a.state) if a else "missing"
    return out
