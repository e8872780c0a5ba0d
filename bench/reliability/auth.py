"""The auth matrix (DESIGN §11): every RPC of JobService and RunnerService × {no token, a bad
token, another project's token, a runner (stage) token on the wrong job} against the real server
with a tokens file, each cell with the code it must get; positive controls (the owner's token, a
read-only token on write RPCs) beside it; afterwards no token may appear in the server's log, in
/metrics, in stored events, or in any file the service wrote.

Expected codes: JobService refuses a missing, unknown or stage token with UNAUTHENTICATED; another
project's token sees a job of project A as NOT_FOUND (ids of other projects leak nothing), may not
create in A (PERMISSION_DENIED) and lists none of A's jobs. RunnerService takes only the stage
token of the very attempt: everything else is UNAUTHENTICATED.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import yaml
from saferlhf.service.auth import create_token
from saferlhf.v1 import job_service_pb2 as api
from saferlhf.v1 import job_service_pb2_grpc as api_grpc
from saferlhf.v1 import resources_pb2 as pb
from saferlhf.v1 import runner_service_pb2 as rpb
from saferlhf.v1 import runner_service_pb2_grpc as rpb_grpc

from bench.reliability.fuzz import FakeServer
from bench.reliability.strategies import QUICKSTART

C = grpc.StatusCode
PROJECT_A, PROJECT_B = "team-a", "team-b"
AUTHORIZED = (C.OK, C.FAILED_PRECONDITION)  # got past authentication and authorization
JOB_RPCS = ("CreateJob", "GetJob", "ListJobs", "WatchJob", "CancelJob", "RetryJob",
            "ApproveGate", "GetStageLogs", "ExportSamples", "ImportLabels")
CREDENTIALS = ("no_token", "bad_token", "other_project_token", "runner_token_wrong_job")


def spec_for(project: str) -> str:
    doc = json.loads(json.dumps(QUICKSTART))
    doc["metadata"]["project"] = project
    return yaml.safe_dump(doc)


def job_request(rpc: str, job_id: str) -> Any:
    """A well-formed request of `rpc` about `job_id` (CreateJob: a spec of project A)."""
    return {
        "CreateJob": lambda: api.CreateJobRequest(spec_yaml=spec_for(PROJECT_A),
                                                  validate_only=True),
        "GetJob": lambda: api.GetJobRequest(job_id=job_id),
        "ListJobs": lambda: api.ListJobsRequest(page_size=100),
        "WatchJob": lambda: api.WatchJobRequest(job_id=job_id),
        "CancelJob": lambda: api.CancelJobRequest(job_id=job_id, reason="auth matrix"),
        "RetryJob": lambda: api.RetryJobRequest(job_id=job_id),
        "ApproveGate": lambda: api.ApproveGateRequest(job_id=job_id, gate_id="r1/cost/0",
                                                      approve=True),
        "GetStageLogs": lambda: api.GetStageLogsRequest(job_id=job_id, stage_id="r1/sft"),
        "ExportSamples": lambda: api.ExportSamplesRequest(job_id=job_id, round=2),
        "ImportLabels": lambda: api.ImportLabelsRequest(job_id=job_id, round=2,
                                                        content=b'{"pair_id": "x"}\n'),
    }[rpc]()


def call(stub: Any, rpc: str, request: Any, token: str | None) -> tuple[C, Any]:
    """(code, response or None). Streams are read to their first message."""
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    try:
        if rpc in ("WatchJob", "GetStageLogs"):
            stream = getattr(stub, rpc)(request, metadata=metadata, timeout=10)
            try:
                first = next(iter(stream), None)
            finally:
                stream.cancel()
            return C.OK, first
        return C.OK, getattr(stub, rpc)(request, metadata=metadata, timeout=30)
    except grpc.RpcError as err:
        return err.code(), None


def run_matrix(root: Path, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    root.mkdir(parents=True, exist_ok=True)
    tokens_file = root / "tokens.yaml"
    tokens = {
        "alice": create_token(tokens_file, name="alice", project=PROJECT_A, role="admin"),
        "alice_read": create_token(tokens_file, name="alice-read", project=PROJECT_A,
                                   role="read"),
        "bob": create_token(tokens_file, name="bob", project=PROJECT_B, role="admin"),
    }
    bad = "srl_" + "0" * 43
    server = FakeServer(root / "server", tokens_file=tokens_file)
    channel = grpc.insecure_channel(server.address)
    jobs, runner = api_grpc.JobServiceStub(channel), rpb_grpc.RunnerServiceStub(channel)
    try:
        a = jobs.CreateJob(api.CreateJobRequest(spec_yaml=spec_for(PROJECT_A)), timeout=60,
                           metadata=(("authorization", f"Bearer {tokens['alice']}"),)).job.id
        b = jobs.CreateJob(api.CreateJobRequest(spec_yaml=spec_for(PROJECT_B)), timeout=60,
                           metadata=(("authorization", f"Bearer {tokens['bob']}"),)).job.id
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and {s["job"] for s in
                                               server.attempts().values()} != {a, b}:
            time.sleep(0.1)
        stage_tokens = {s["job"]: (attempt, s["token"]) for attempt, s in
                        server.attempts().items()}
        attempt_a, token_a = stage_tokens[a]
        _, token_b = stage_tokens[b]
        creds = {"no_token": None, "bad_token": bad, "other_project_token": tokens["bob"],
                 "runner_token_wrong_job": token_b}
        cells = []

        def cell(rpc: str, who: str, expected: tuple[C, ...], code: C, extra_ok: bool = True
                 ) -> None:
            passed = code in expected and extra_ok
            cells.append({"rpc": rpc, "credential": who, "expected": [c.name for c in expected],
                          "got": code.name, "passed": passed})

        for rpc in JOB_RPCS:
            for who in CREDENTIALS:
                code, response = call(jobs, rpc, job_request(rpc, a), creds[who])
                if who == "other_project_token":
                    if rpc == "CreateJob":
                        cell(rpc, who, (C.PERMISSION_DENIED,), code)
                    elif rpc == "ListJobs":
                        cell(rpc, who, (C.OK,), code, response is not None and all(
                            j.id != a for j in response.jobs))
                    else:
                        cell(rpc, who, (C.NOT_FOUND,), code)
                else:
                    cell(rpc, who, (C.UNAUTHENTICATED,), code)
        event = pb.Event(seq=1, attempt=1, time="2026-11-27T10:00:00Z",
                         type=pb.EVENT_TYPE_LOG, payload_json='{"level": "info", '
                                                              '"message": "auth matrix"}')
        report = rpb.ReportEventsRequest(attempt_id=attempt_a, events=[event])
        for who in CREDENTIALS:
            code, _ = call(runner, "ReportEvents", report, creds[who])
            cell("ReportEvents", who, (C.UNAUTHENTICATED,), code)

        # Positive controls (not cells of the matrix): the owner gets through, a read-only
        # token may read but not write. Destructive calls last (CancelJob ends job A).
        controls = []
        for rpc in (*[r for r in JOB_RPCS if r != "CancelJob"], "CancelJob"):
            if rpc in ("CreateJob", "CancelJob", "RetryJob", "ApproveGate", "ImportLabels"):
                code, _ = call(jobs, rpc, job_request(rpc, a), tokens["alice_read"])
                controls.append({"rpc": rpc, "credential": "read_only_token", "got": code.name,
                                 "passed": code == C.PERMISSION_DENIED})
            code, response = call(jobs, rpc, job_request(rpc, a), tokens["alice"])
            ok = code in AUTHORIZED and (rpc != "ListJobs" or any(
                j.id == a for j in response.jobs))
            controls.append({"rpc": rpc, "credential": "owner_token", "got": code.name,
                             "passed": ok})
        code, response = call(runner, "ReportEvents", report, token_a)
        controls.append({"rpc": "ReportEvents", "credential": "own_stage_token",
                         "got": code.name, "passed": code == C.OK and response.stored == 1})

        leaks = token_leaks(server, list(tokens.values()) + [bad, token_a, token_b],
                            jobs, tokens["alice"], a)
    finally:
        channel.close()
        server.stop()
    leaks["server_log"] = sum(server.log_text().count(t)
                              for t in [*tokens.values(), bad, token_a, token_b])
    leaks["server_log_bytes_scanned"] = len(server.log_text())
    result = {
        "cells": len(cells), "cells_passed": sum(c["passed"] for c in cells),
        "rpcs": len(JOB_RPCS) + 1, "credentials": list(CREDENTIALS),
        "controls": len(controls), "controls_passed": sum(c["passed"] for c in controls),
        "token_leaks": leaks, "failed_cells": [c for c in cells if not c["passed"]],
        "failed_controls": [c for c in controls if not c["passed"]], "per_cell": cells,
    }
    if log:
        log(f"auth: {result['cells_passed']}/{result['cells']} cells, "
            f"{result['controls_passed']}/{result['controls']} controls, leaks {leaks}")
    return result


def token_leaks(server: FakeServer, secrets: list[str], jobs: api_grpc.JobServiceStub,
                admin_token: str, job_id: str) -> dict[str, int]:
    """How often any token shows up in /metrics, the stored events, and the files under the
    server's folder (the tokens file holds only hashes)."""
    found: dict[str, int] = {}
    port = server.state().get("metrics_port")
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    found["metrics"] = sum(text.count(t) for t in secrets)
    found["metrics_bytes_scanned"] = len(text)
    stored = _events_text(jobs, job_id, admin_token)
    found["events"] = sum(stored.count(t) for t in secrets)
    found["events_bytes_scanned"] = len(stored)
    files = scanned = 0
    for path in server.root.parent.rglob("*"):
        # the fake executor's info.json holds the stage tokens on purpose (the test's hook)
        if path.is_file() and path.name not in ("server.log", "info.json", "info.json.tmp"):
            data = path.read_bytes()
            files += sum(data.count(t.encode()) for t in secrets)
            scanned += 1
    found["files"] = files
    found["files_scanned"] = scanned
    return found


def _events_text(jobs: api_grpc.JobServiceStub, job_id: str, token: str) -> str:
    """Every stored event of the job (WatchJob replay, stopped at the job's last cursor)."""
    md = (("authorization", f"Bearer {token}"),)
    out = []
    stream = jobs.WatchJob(api.WatchJobRequest(job_id=job_id), timeout=10, metadata=md)
    try:
        for update in stream:
            out.append(str(update))
            if update.WhichOneof("update") == "job" and update.job.state in (
                    pb.JOB_STATE_CANCELLED, pb.JOB_STATE_FAILED, pb.JOB_STATE_SUCCEEDED):
                break
    except grpc.RpcError as err:
        if err.code() != C.DEADLINE_EXCEEDED:
            raise
    finally:
        stream.cancel()
    return "".join(out)
