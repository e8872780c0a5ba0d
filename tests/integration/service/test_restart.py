"""kill -9 the service mid-job, restart it: the job completes with real runners, and its stored
events equal the runners' events.jsonl — nothing lost, nothing doubled (DESIGN §6)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from saferlhf.v1 import job_service_pb2 as api
from saferlhf.v1 import job_service_pb2_grpc as api_grpc
from saferlhf.v1 import resources_pb2 as pb

from tests.tools import ROOT

SPEC = (Path(__file__).parent / "tiny_job.yaml").read_text()
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_service(state: Path, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "SAFERLHF_LOG_LEVEL": "INFO"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "saferlhf.service", "serve", "--listen", f"127.0.0.1:{port}",
         "--state-dir", str(state), "--metrics-address", "127.0.0.1:0"],
        cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    grpc.channel_ready_future(channel).result(timeout=120)
    channel.close()
    return proc


def stage_state(jobs: api_grpc.JobServiceStub, job_id: str, stage_id: str) -> int:
    got = jobs.GetJob(api.GetJobRequest(job_id=job_id), timeout=30)
    return next(s.state for s in got.stages if s.id == stage_id)


def wait_until(probe, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def stored_events(jobs: api_grpc.JobServiceStub, job_id: str, after: int = 0) -> list:
    return [m for m in jobs.WatchJob(api.WatchJobRequest(job_id=job_id, after_cursor=after),
                                     timeout=120)]


def test_a_job_survives_kill_9_of_the_service_with_every_event_stored_once(tmp_path):
    port, state, log = _free_port(), tmp_path / "state", tmp_path / "service.log"
    service = start_service(state, port, log)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    jobs = api_grpc.JobServiceStub(channel)
    try:
        job = jobs.CreateJob(api.CreateJobRequest(spec_yaml=SPEC), timeout=60).job
        # Kill while the reward model trains: its runner keeps writing events meanwhile.
        wait_until(lambda: stage_state(jobs, job.id, "r1/reward") == pb.ATTEMPT_STATE_RUNNING,
                   "r1/reward to run", 600)
        service.send_signal(signal.SIGKILL)
        service.wait(timeout=30)
        time.sleep(5)  # the runner goes on without the service
        service = start_service(state, port, log)
        wait_until(lambda: jobs.GetJob(api.GetJobRequest(job_id=job.id), timeout=30).job.state
                   in (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED),
                   "the job to end", 1200)
        got = jobs.GetJob(api.GetJobRequest(job_id=job.id), timeout=30)
        assert got.job.state == pb.JOB_STATE_SUCCEEDED, (got.job.message, log.read_text()[-3000:])
        updates = stored_events(jobs, job.id)
        events = [m.event for m in updates if m.WhichOneof("update") == "event"]
        keys = [(e.attempt_id, e.seq) for e in events]
        assert len(keys) == len(set(keys)), "an event was stored twice"
        stored = {(e.attempt_id, e.seq): {**json.loads(e.payload_json), "seq": e.seq,
                                          "attempt": e.attempt, "time": e.time,
                                          "type": pb.EventType.Name(e.type)[11:].lower()}
                  for e in events}
        attempt_ids = {(a.stage_id, a.number): a.id for a in got.attempts}
        from_files = {}
        for stage in got.stages:
            path = Path(stage.output_dir) / "events.jsonl"
            for line in path.read_text().splitlines():
                e = json.loads(line)
                from_files[(attempt_ids[(stage.id, e.get("attempt", 1))], e["seq"])] = e
        assert from_files, "the runners wrote no events"
        assert stored == from_files
        middle = updates[len(updates) // 2].cursor
        assert [m.cursor for m in stored_events(jobs, job.id, middle)] == \
            [m.cursor for m in updates if m.cursor > middle]
    finally:
        channel.close()
        service.terminate()
        try:
            service.wait(timeout=30)
        except subprocess.TimeoutExpired:
            service.kill()
