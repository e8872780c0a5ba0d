"""Fuzzing every RPC of both services (JobService, RunnerService) with hypothesis-generated
requests against the real server in its own process (bench/reliability/fake_server.py): bad YAML,
10 MB strings, deep nesting, wrong types, NaN / negative / huge numbers, absurd page sizes,
unknown ids, path-traversal paths, malformed, duplicated and out-of-order runner events — with
valid stage tokens too, so event validation and ingestion are reached, not only auth.

A request passes when the server answers with a status other than INTERNAL or UNKNOWN within
its deadline (streams are read until their first message or end, then cancelled). Afterwards the
server's log must hold no traceback, the server must still be up, and its RSS growth is reported.
"""

from __future__ import annotations

import collections
import json
import math
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from saferlhf.v1 import job_service_pb2 as api
from saferlhf.v1 import job_service_pb2_grpc as api_grpc
from saferlhf.v1 import resources_pb2 as pb
from saferlhf.v1 import runner_service_pb2 as rpb
from saferlhf.v1 import runner_service_pb2_grpc as rpb_grpc

from bench.reliability.service import ROOT
from bench.reliability.strategies import (
    IDS,
    QUICKSTART,
    SCALARS,
    TEN_MB,
    TRAVERSAL,
    Known,
    events,
    pick,
    spec_text,
    well_formed_events,
)

BAD_CODES = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
DEADLINE_SECONDS = 30.0
STREAM_SECONDS = 3.0
STREAM_MESSAGES = 5000


class FakeServer:
    """bench/reliability/fake_server.py as a subprocess (log in `root/server.log`)."""

    def __init__(self, root: Path, *, tokens_file: Path | None = None,
                 tls: tuple[Path, Path, Path | None] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.info = self.root / "info.json"
        self.log = self.root / "server.log"
        cmd = [sys.executable, "-m", "bench.reliability.fake_server", "--state-dir",
               str(self.root / "state"), "--info", str(self.info)]
        if tokens_file is not None:
            cmd += ["--tokens-file", str(tokens_file)]
        if tls is not None:
            cmd += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
            if tls[2] is not None:
                cmd += ["--tls-client-ca", str(tls[2])]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                         env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1",
                                              "OMP_NUM_THREADS": "1",
                                              "PYTHONPATH": str(ROOT), **(env or {})})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the fake server exited: {self.log.read_text()[-3000:]}")
            port = self.state().get("port") if self.info.exists() else 0
            if port:
                self.port = int(port)
                self.address = f"127.0.0.1:{port}"
                return
            time.sleep(0.1)
        raise TimeoutError("the fake server did not start")

    def state(self) -> dict[str, Any]:
        try:
            return json.loads(self.info.read_text())
        except (OSError, ValueError):
            return {}

    def attempts(self) -> dict[str, dict[str, str]]:
        return dict(self.state().get("attempts", {}))

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


# ---- requests ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    requests: int = 0
    by_rpc: collections.Counter = field(default_factory=collections.Counter)
    codes: collections.Counter = field(default_factory=collections.Counter)
    bad: list[str] = field(default_factory=list)  # INTERNAL / UNKNOWN / hangs, with the request
    seconds: float = 0.0


class Fuzzer:
    def __init__(self, address: str, server: FakeServer, metadata: tuple = ()) -> None:
        self.server = server
        self.channel = grpc.insecure_channel(address, options=[
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024)])
        self.jobs = api_grpc.JobServiceStub(self.channel)
        self.runner = rpb_grpc.RunnerServiceStub(self.channel)
        self.metadata = metadata
        self.known = Known()
        self.outcome = Outcome()
        self.next_seq: dict[str, int] = {}  # per attempt: the next seq never sent

    def record(self, rpc: str, code: grpc.StatusCode, what: str) -> None:
        self.outcome.requests += 1
        self.outcome.by_rpc[rpc] += 1
        self.outcome.codes[code.name] += 1
        if code in BAD_CODES or code == grpc.StatusCode.DEADLINE_EXCEEDED:
            self.outcome.bad.append(f"{rpc} → {code.name}: {what[:300]}")

    def unary(self, rpc: str, stub: Any, request: Any, metadata: tuple | None = None) -> Any:
        try:
            response = getattr(stub, rpc)(request, timeout=DEADLINE_SECONDS,
                                          metadata=self.metadata if metadata is None
                                          else metadata)
        except grpc.RpcError as err:
            self.record(rpc, err.code(), f"{_short(request)} — {err.details()}")
            return None
        self.record(rpc, grpc.StatusCode.OK, _short(request))
        return response

    def stream(self, rpc: str, request: Any) -> None:
        """Read a server stream: its whole replay, up to STREAM_MESSAGES messages or until it
        ends (an error in the middle of a replay counts), then cancel it. A stream of a live job
        that has sent everything rightly waits for news: running out of STREAM_SECONDS then
        counts as OPEN (an existing job only; for any other id it is a hang)."""
        call = getattr(self.jobs, rpc)(request, timeout=STREAM_SECONDS,
                                       metadata=self.metadata)
        try:
            for n, _ in enumerate(call):
                if n >= STREAM_MESSAGES:
                    break
            code = grpc.StatusCode.OK
        except grpc.RpcError as err:
            code = err.code()
            if code == grpc.StatusCode.DEADLINE_EXCEEDED and request.job_id in self.known.jobs:
                self.outcome.requests += 1
                self.outcome.by_rpc[rpc] += 1
                self.outcome.codes["OPEN"] += 1
                return
            self.record(rpc, code, f"{_short(request)} — {err.details()}")
            return
        finally:
            call.cancel()
        self.record(rpc, code, _short(request))

    # one request per example, drawn from one of the RPCs
    def request(self, data: st.DataObject) -> None:
        rpc = data.draw(st.sampled_from(RPCS), label="rpc")
        getattr(self, "_" + rpc)(data)

    def _CreateJob(self, data: st.DataObject) -> None:
        text = data.draw(spec_text(), label="spec")
        validate_only = data.draw(st.sampled_from([True] * 4 + [False]))
        request = api.CreateJobRequest(
            spec_yaml=text, validate_only=validate_only,
            project=data.draw(st.one_of(st.just(""), st.text(max_size=20),
                                        st.sampled_from(TRAVERSAL))),
            request_id=data.draw(st.one_of(st.just(""), st.text(max_size=20))))
        response = self.unary("CreateJob", self.jobs, request)
        if response is not None and response.job.id:
            self.known.jobs.append(response.job.id)

    def _GetJob(self, data: st.DataObject) -> None:
        self.unary("GetJob", self.jobs, api.GetJobRequest(job_id=pick(data, self.known.jobs, IDS)))

    def _ListJobs(self, data: st.DataObject) -> None:
        self.unary("ListJobs", self.jobs, api.ListJobsRequest(
            filter=data.draw(st.one_of(st.text(max_size=60), st.sampled_from([
                "state=RUNNING", "project=demo", "label.purpose=quickstart", "name=",
                "state=NOPE", "x=y=z", "label.=1", "project=" + "p" * 10000]))),
            page_size=data.draw(st.integers(-2**31, 2**31 - 1)),
            page_token=data.draw(st.one_of(st.text(max_size=80), st.just("x" * 100_000)))))

    def _WatchJob(self, data: st.DataObject) -> None:
        self.stream("WatchJob", api.WatchJobRequest(
            job_id=pick(data, self.known.jobs, IDS),
            after_cursor=data.draw(st.integers(-2**63, 2**63 - 1))))

    def _CancelJob(self, data: st.DataObject) -> None:
        self.unary("CancelJob", self.jobs, api.CancelJobRequest(
            job_id=pick(data, self.known.jobs, IDS), reason=data.draw(st.text(max_size=100))))

    def _RetryJob(self, data: st.DataObject) -> None:
        self.unary("RetryJob", self.jobs, api.RetryJobRequest(
            job_id=pick(data, self.known.jobs, IDS)))

    def _ApproveGate(self, data: st.DataObject) -> None:
        self.unary("ApproveGate", self.jobs, api.ApproveGateRequest(
            job_id=pick(data, self.known.jobs, IDS),
            gate_id=pick(data, self.known.gates, IDS),
            approve=data.draw(st.booleans()), comment=data.draw(st.text(max_size=50))))

    def _GetStageLogs(self, data: st.DataObject) -> None:
        self.stream("GetStageLogs", api.GetStageLogsRequest(
            job_id=pick(data, self.known.jobs, IDS),
            stage_id=pick(data, self.known.stages, IDS),
            follow=data.draw(st.booleans())))

    def _ExportSamples(self, data: st.DataObject) -> None:
        self.unary("ExportSamples", self.jobs, api.ExportSamplesRequest(
            job_id=pick(data, self.known.jobs, IDS), round=data.draw(st.integers(-2**31,
                                                                              2**31 - 1))))

    def _ImportLabels(self, data: st.DataObject) -> None:
        content = data.draw(st.one_of(
            st.binary(max_size=200), st.just(b"\xff\xfe" * 1000),
            st.just(b"x" * TEN_MB),
            st.lists(st.dictionaries(st.sampled_from(["pair_id", "better", "safer",
                                                      "is_safe_0", "is_safe_1", "x"]),
                                     SCALARS, max_size=5), max_size=5).map(
                lambda rows: "\n".join(json.dumps(r, default=str) for r in rows).encode())))
        self.unary("ImportLabels", self.jobs, api.ImportLabelsRequest(
            job_id=pick(data, self.known.jobs, IDS), round=data.draw(st.integers(-3, 5)),
            content=content))

    def _ReportEvents(self, data: st.DataObject) -> None:
        attempts = self.server.attempts()
        ids = sorted(attempts)
        attempt_id = pick(data, ids, IDS, share=3)
        other = pick(data, ids, IDS)  # another attempt: its token is the wrong one here
        garbage = data.draw(st.text(alphabet=st.characters(min_codepoint=33,
                                                           max_codepoint=126), max_size=40))
        which = data.draw(st.integers(0, 6))
        if attempt_id in attempts and which < 4:
            token = attempts[attempt_id]["token"]
        elif which == 4 and other in attempts:
            token = attempts[other]["token"]
        else:
            token = "" if which == 5 else garbage
        seqs = st.one_of(st.integers(1, 50), st.integers(-2**63, 2**63 - 1))
        batch = data.draw(st.one_of(events(seqs), st.just("huge"), well_formed_events()),
                          label="events")
        if batch == "huge":
            batch = [pb.Event(seq=i + 1, type=1, payload_json="{}") for i in range(10_001)]
        elif batch and isinstance(batch[0], tuple):  # fresh seqs: the payloads reach ingestion
            start = self.next_seq.get(attempt_id, 1)
            batch = [pb.Event(seq=start + i, attempt=1, time="2026-11-27T10:00:00Z", type=t,
                              payload_json=payload) for i, (t, payload) in enumerate(batch)]
            self.next_seq[attempt_id] = start + len(batch)
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.unary("ReportEvents", self.runner,
                   rpb.ReportEventsRequest(attempt_id=attempt_id, events=batch), metadata)


RPCS = ("CreateJob", "CreateJob", "GetJob", "ListJobs", "WatchJob", "CancelJob", "RetryJob",
        "ApproveGate", "GetStageLogs", "ExportSamples", "ImportLabels", "ReportEvents",
        "ReportEvents", "ReportEvents")


def _short(request: Any) -> str:
    text = str(request).replace("\n", " ")
    return text[:200] + (f"… ({len(text)} chars)" if len(text) > 200 else "")


def run_fuzz(root: Path, n: int, *, seed: int = 0, log: Any = None,
             env: dict[str, str] | None = None) -> dict[str, Any]:
    """n requests against a fresh fake-executor server; the figures and any bad answers."""
    server = FakeServer(root, env=env)
    fuzzer = Fuzzer(server.address, server)
    started = time.monotonic()
    rss: dict[str, float] = {}
    series: list[tuple[int, float]] = []  # (requests so far, server RSS MB)
    try:
        # A few real jobs first, so requests can aim at ids (and stage tokens) that exist.
        for i in range(3):
            response = fuzzer.unary("CreateJob", fuzzer.jobs, api.CreateJobRequest(
                spec_yaml=yaml.safe_dump(QUICKSTART), request_id=f"seed-{i}"))
            if response is not None:
                fuzzer.known.jobs.append(response.job.id)
        wait_until = time.monotonic() + 30
        while not server.attempts() and time.monotonic() < wait_until:
            time.sleep(0.1)
        rss["start_mb"] = server.rss_mb()
        batch = 0
        while fuzzer.outcome.requests < n:
            left = n - fuzzer.outcome.requests

            @settings(max_examples=min(left, 500), deadline=None, database=None,
                      phases=[Phase.generate], derandomize=False,
                      suppress_health_check=list(HealthCheck))
            @given(st.data())
            def one(data: st.DataObject) -> None:
                if fuzzer.outcome.requests < n:
                    fuzzer.request(data)

            _seeded(one, seed * 1000 + batch)()
            batch += 1
            series.append((fuzzer.outcome.requests, round(server.rss_mb(), 1)))
            if batch == 1:
                rss["after_first_500_mb"] = server.rss_mb()
            if log:
                log(f"fuzz: {fuzzer.outcome.requests}/{n} requests, codes "
                    f"{dict(fuzzer.outcome.codes)}, bad {len(fuzzer.outcome.bad)}, "
                    f"rss {server.rss_mb():.0f} MB")
            if not server.alive():
                break
        rss["end_mb"] = server.rss_mb()
        alive = server.alive()
    finally:
        fuzzer.channel.close()
        server.stop()
    text = server.log_text()
    out = fuzzer.outcome
    return {
        "requests": out.requests, "by_rpc": dict(sorted(out.by_rpc.items())),
        "codes": dict(sorted(out.codes.items())),
        "internal_or_unknown": sum(out.codes.get(c.name, 0) for c in BAD_CODES),
        "deadline_exceeded": out.codes.get("DEADLINE_EXCEEDED", 0),
        "streams_open_at_last_cursor": out.codes.get("OPEN", 0),
        "bad_examples": out.bad[:20], "server_alive_at_end": alive,
        "tracebacks_in_server_log": text.count("Traceback"),
        "rss_mb": {k: round(v, 1) for k, v in rss.items() if not math.isnan(v)},
        "rss_growth_mb_after_warmup": round(rss.get("end_mb", 0) - rss.get(
            "after_first_500_mb", rss.get("start_mb", 0)), 1),
        "rss_mb_series": series,
        "seconds": round(time.monotonic() - started, 1),
    }


def _seeded(test: Any, seed: int) -> Any:
    from hypothesis import seed as hseed

    return hseed(seed)(test)
