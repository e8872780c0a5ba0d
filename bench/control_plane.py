"""Control-plane benchmark (issue 4, part 12): prints ONE JSON line of figures.

    python -m bench.control_plane [--quick] [--write]

Figures (targets on 2 cores in brackets): create_validate_p99_ms [≤ 10; over 2,000 calls, 500
with --quick], create_p99_ms, ingest_events_per_second with 8 concurrent runner streams
[≥ 20,000], watch_delivery_p99_ms with 50 watchers [≤ 50], scrape_ms_1000_jobs [≤ 100],
list_page_p99_ms_10000_jobs for SQLite and PostgreSQL [≤ 20], service_rss_mb_1000_jobs [≤ 300].

Everything goes through the real gRPC server and the real App (store, spec loader, planner,
scheduler, metrics). The executor is a NullExecutor: it accepts attempts and keeps them
"running" without starting processes, so the figures measure the control plane, not training.
`--write` also stores the figures with a description of the machine in
docs/results/control_plane.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
from prometheus_client import CollectorRegistry
from saferlhf.service.api.server import create_server
from saferlhf.service.auth import TokenAuth
from saferlhf.service.cli.serve import freeze_startup_heap
from saferlhf.service.execution.base import LaunchSpec, RunState, RunStatus
from saferlhf.service.settings import Settings
from saferlhf.service.state.types import Job, JobState
from saferlhf.v1 import job_service_pb2 as api
from saferlhf.v1 import job_service_pb2_grpc as api_grpc
from saferlhf.v1 import resources_pb2 as pb
from saferlhf.v1 import runner_service_pb2 as rpb
from saferlhf.v1 import runner_service_pb2_grpc as rpb_grpc

ROOT = Path(__file__).resolve().parents[1]
SPEC = (ROOT / "examples" / "quickstart.yaml").read_text()


class NullExecutor:
    """Accepts attempts and reports them running forever; starts nothing (see module doc)."""

    name = "null"

    def __init__(self) -> None:
        self.specs: dict[str, LaunchSpec] = {}

    def submit(self, spec: LaunchSpec) -> str:
        self.specs[spec.attempt_id] = spec
        return "null:" + spec.attempt_id

    def poll(self, handle: str) -> RunStatus:
        return RunStatus(RunState.RUNNING)

    def cancel(self, handle: str, grace_seconds: float = 10.0) -> None:
        return None

    def logs(self, handle: str, follow: bool = False) -> Iterator[str]:
        return iter(())

    def adopt(self) -> dict[str, str]:
        return {a: "null:" + a for a in self.specs}


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]


@contextlib.contextmanager
def served(state_dir: str, *, store: Any = None, start: bool = True,
           **settings: Any) -> Iterator[tuple[Any, NullExecutor, str]]:
    from saferlhf.service.app import build_app

    executor = NullExecutor()
    cfg = Settings(state_dir=state_dir, **settings)
    registry = CollectorRegistry()
    app = build_app(cfg, registry=registry, executor=executor, store=store)
    server, port = create_server("127.0.0.1:0", app, auth=TokenAuth(None), registry=registry)
    address = f"127.0.0.1:{port}"
    app.set_events_address(address)
    server.start()
    if start:
        app.start()
    freeze_startup_heap()  # as `saferlhf serve` does
    try:
        yield app, executor, address
    finally:
        server.stop(grace=None)
        app.close()


def timed(fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000.0


# --- figures -------------------------------------------------------------------------------


def bench_create(jobs: Any, n_validate: int, n_create: int) -> dict[str, float]:
    """Validate-only creates (nothing stored, so as many as a p99 needs: at 500 samples the p99
    is the 5th-slowest call), then real creates (each stores a job and its ~10 stages)."""
    request = api.CreateJobRequest(spec_yaml=SPEC, validate_only=True)
    for _ in range(20):  # warm: lazily imported validation code, gRPC channel
        jobs.CreateJob(request)
    validate = [timed(lambda: jobs.CreateJob(request)) for _ in range(n_validate)]
    create = [timed(lambda: jobs.CreateJob(api.CreateJobRequest(spec_yaml=SPEC)))
              for _ in range(n_create)]
    ordered = sorted(validate)
    return {"create_validate_p99_ms": p99(validate), "create_p99_ms": p99(create),
            "create_validate_p50_ms": statistics.median(validate),
            "create_validate_p90_ms": ordered[int(0.9 * (len(ordered) - 1))],
            "create_validate_max_ms": ordered[-1], "create_validate_samples": n_validate,
            "create_p50_ms": statistics.median(create), "create_samples": n_create}


def _events(start: int, n: int, sent: float | None = None) -> list[pb.Event]:
    out = []
    for seq in range(start, start + n):
        payload = {"step": seq, "values": {"train/lambda": 1.0 + seq * 1e-4,
                                           "train/reward": 0.5, "train/cost": -0.1,
                                           "train/kl_divergence": 0.01}}
        if sent is not None:
            payload["sent"] = sent
        out.append(pb.Event(seq=seq, attempt=1, time="2026-11-27T10:00:00.000Z",
                            type=pb.EVENT_TYPE_METRICS, payload_json=json.dumps(payload)))
    return out


def bench_ingest(address: str, executor: NullExecutor, per_stream: int,
                 batch: int = 500) -> float:
    specs = list(executor.specs.values())[:8]
    if len(specs) < 8:
        raise RuntimeError(f"expected 8 running attempts, got {len(specs)}")
    channel = grpc.insecure_channel(address)
    stub = rpb_grpc.RunnerServiceStub(channel)
    stored = [0] * len(specs)

    # Each runner's batches are built before the clock starts: encoding them is the runners'
    # work, in their own processes, not the service's; here they would share its GIL.
    requests = [[rpb.ReportEventsRequest(attempt_id=spec.attempt_id,
                                         events=_events(start, min(batch, per_stream + 1 - start)))
                 for start in range(1, per_stream + 1, batch)] for spec in specs]

    def stream(i: int, spec: LaunchSpec) -> None:
        md = [("authorization", f"Bearer {spec.env['SAFERLHF_STAGE_TOKEN']}")]
        for request in requests[i]:
            stored[i] += stub.ReportEvents(request, metadata=md, timeout=120).stored
    threads = [threading.Thread(target=stream, args=(i, s)) for i, s in enumerate(specs)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - t
    channel.close()
    if sum(stored) != per_stream * len(specs):
        raise RuntimeError(f"stored {sum(stored)} of {per_stream * len(specs)} events")
    return sum(stored) / elapsed


def _watchers(address: str, job_id: str, after: int, watchers: int, events: int,
              ready: Any, delays: Any) -> None:
    """A watcher process (as `saferlhf watch` terminals and dashboards are): `watchers` streams
    of one job, each recording send → receive delays of the events that carry `sent`. Both sides
    read time.perf_counter, CLOCK_MONOTONIC on Linux: one clock for every process."""
    channel = grpc.insecure_channel(address)
    jobs = api_grpc.JobServiceStub(channel)
    lock = threading.Lock()
    got: list[float] = []
    started = threading.Barrier(watchers + 1)

    def watch() -> None:
        stream = jobs.WatchJob(api.WatchJobRequest(job_id=job_id, after_cursor=after))
        started.wait()
        seen = 0
        for msg in stream:
            if msg.WhichOneof("update") != "event":
                continue
            payload = json.loads(msg.event.payload_json)
            if "sent" in payload:
                with lock:
                    got.append((time.perf_counter() - payload["sent"]) * 1000.0)
                seen += 1
                if seen == events:
                    stream.cancel()
                    return
    threads = [threading.Thread(target=watch, daemon=True) for _ in range(watchers)]
    for th in threads:
        th.start()
    started.wait()
    ready.set()
    for th in threads:
        th.join(timeout=120)
    delays.put(got)
    channel.close()


def bench_watch(app: Any, address: str, spec: LaunchSpec, watchers: int,
                events: int, first: int = 10_000_000) -> tuple[float, float]:
    """(p99, p50) ms from ReportEvents being sent to each watcher receiving the event; the
    watchers run in their own process, not on the service's interpreter lock."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    ready, delays_q = ctx.Event(), ctx.Queue()
    child = ctx.Process(target=_watchers, args=(
        address, spec.job_id, app.store.max_cursor(spec.job_id), watchers, events, ready,
        delays_q), daemon=True)
    child.start()
    if not ready.wait(timeout=120):
        child.kill()
        raise RuntimeError("the watcher process did not start its streams")
    time.sleep(0.5)  # let every stream reach the server
    channel = grpc.insecure_channel(address)
    runner = rpb_grpc.RunnerServiceStub(channel)
    md = [("authorization", f"Bearer {spec.env['SAFERLHF_STAGE_TOKEN']}")]
    for i in range(events):
        runner.ReportEvents(rpb.ReportEventsRequest(
            attempt_id=spec.attempt_id, events=_events(first + i, 1, time.perf_counter())),
            metadata=md, timeout=30)
        time.sleep(0.02)
    delays: list[float] = delays_q.get(timeout=180)
    child.join(timeout=30)
    channel.close()
    if len(delays) != watchers * events:
        raise RuntimeError(f"watchers received {len(delays)} of {watchers * events} events")
    return p99(delays), statistics.median(delays)


def bench_scrape_and_rss(root: Path, n_jobs: int) -> dict[str, float]:
    from saferlhf.service.metrics import serve_metrics

    state = root / "scrape"
    with served(str(state), start=False) as (app, _, _address):
        for i in range(n_jobs):
            job = app.create_job(SPEC, project=None, request_id=f"b{i}", validate_only=False)
            for kind, rnd, values in (("ppo_lag", 1, {"train/lambda": 1.2, "train/reward": 0.4,
                                                      "train/cost": -0.2,
                                                      "train/episode_cost": 0.1,
                                                      "train/kl_divergence": 0.02,
                                                      "train/harmful_rate": 0.05}),
                                      ("evaluate", 1, {"eval/harmful_rate": 0.04,
                                                       "eval/helpfulness": 0.8})):
                app.metrics.observe_event(job_id=job.id, project=job.project, round=rnd,
                                          kind=kind, now=time.time(), event={
                                              "type": "metrics", "step": 10, "values": values})
        http, _ = serve_metrics(app.registry, "127.0.0.1:0")
        url = f"http://127.0.0.1:{http.server_port}/metrics"
        samples = []
        for _ in range(10):
            t = time.perf_counter()
            with urllib.request.urlopen(url, timeout=30) as r:
                body = r.read()
            samples.append((time.perf_counter() - t) * 1000.0)
        http.shutdown()
        series = sum(1 for line in body.decode().splitlines() if line.startswith("saferlhf_"))
        now = time.time()
        for job in app.store.list_jobs(_all(), 1000)[0]:
            app.store.set_job_state(job.id, JobState.CANCELLED, at=now, reason="Bench")
    rss, listed = service_rss_mb(state)
    return {"scrape_ms_1000_jobs": statistics.median(samples),
            "scrape_series_1000_jobs": series, "service_rss_mb_1000_jobs": rss,
            "service_rss_jobs_listed": listed}


def _all() -> Any:
    from saferlhf.service.store import parse_filter

    return parse_filter("", None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_rss_mb(state: Path) -> tuple[float, int]:
    """RSS of `saferlhf serve` over a state dir holding the jobs, after listing all of them."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "saferlhf.service", "serve", "--state-dir", str(state), "--listen",
         f"127.0.0.1:{port}", "--metrics-address", "127.0.0.1:0"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=60)
        jobs = api_grpc.JobServiceStub(channel)
        token, seen = "", []
        while True:
            page = jobs.ListJobs(api.ListJobsRequest(page_size=100, page_token=token), timeout=60)
            seen.extend(page.jobs)
            token = page.next_page_token
            if not token:
                break
        for job in seen[:100]:
            jobs.GetJob(api.GetJobRequest(job_id=job.id), timeout=60)
        status = Path(f"/proc/{proc.pid}/status").read_text()
        kb = next(int(line.split()[1]) for line in status.splitlines()
                  if line.startswith("VmRSS:"))
        channel.close()
        return kb / 1024.0, len(seen)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def bench_list(store_url: str | None, root: Path, n_jobs: int, pages: int) -> float:
    from saferlhf.service.store import open_store

    state = root / ("list-pg" if store_url else "list-sqlite")
    url = store_url or f"sqlite:///{state / 'state.db'}"
    state.mkdir(parents=True, exist_ok=True)
    store = open_store(url)
    base = time.time()
    for i in range(n_jobs):
        store.create_job(Job(id=f"j-bench-{i:06d}", name=f"job{i}", project=f"p{i % 10}",
                             spec={}, state=JobState.SUCCEEDED, labels={"team": f"t{i % 7}"},
                             created_at=base + i, updated_at=base + i), [], [])
    latencies = []
    with served(str(state), store=store, start=False) as (_app, _, address):
        channel = grpc.insecure_channel(address)
        jobs = api_grpc.JobServiceStub(channel)
        token = ""
        for _ in range(pages):
            t = time.perf_counter()
            page = jobs.ListJobs(api.ListJobsRequest(page_size=50, page_token=token), timeout=60)
            latencies.append((time.perf_counter() - t) * 1000.0)
            token = page.next_page_token or ""
        channel.close()
    return p99(latencies)


class Postgres:
    """A throwaway PostgreSQL (initdb into a temp dir, as `postgres` when running as root)."""

    def __init__(self) -> None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not found:
            raise RuntimeError("PostgreSQL binaries not installed")
        self.bindir = found[-1].parent
        self.root = Path(tempfile.mkdtemp(prefix="saferlhf-bench-pg-"))
        self.port = _free_port()
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            self.prefix = ["runuser", "-u", "postgres", "--"]
            os.chmod(self.root, 0o755)
            shutil.chown(self.root, "postgres")
        data = self.root / "data"
        self._run(["initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"])
        self._run(["pg_ctl", "-D", str(data), "-w", "-l", str(self.root / "log"), "-o",
                   f"-p {self.port} -k {self.root} -c listen_addresses=''", "start"])
        self.data = data

    def _run(self, cmd: list[str]) -> None:
        subprocess.run([*self.prefix, str(self.bindir / cmd[0]), *cmd[1:]], check=True,
                       capture_output=True, timeout=120)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@/postgres?host={self.root}&port={self.port}"

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run(["pg_ctl", "-D", str(self.data), "-m", "immediate", "stop"])
        shutil.rmtree(self.root, ignore_errors=True)


def machine() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal:"))
    return {"cpu": model, "cores": os.cpu_count(), "memory_gb": round(mem_kb / 2**20, 1),
            "os": platform.platform(), "python": platform.python_version(),
            "grpcio": grpc.__version__, "load_average_1m": os.getloadavg()[0]}


def run(quick: bool) -> dict[str, Any]:
    n_validate = 500 if quick else 2_000
    n_create = 50 if quick else 300
    per_stream = 2_000 if quick else 20_000
    watch_events = 20 if quick else 100
    pages = 50 if quick else 200
    n_list = 2_000 if quick else 10_000
    n_scrape = 200 if quick else 1_000
    out: dict[str, Any] = {"quick": quick}
    with tempfile.TemporaryDirectory(prefix="saferlhf-bench-") as tmp:
        root = Path(tmp)
        with served(str(root / "main"), max_concurrent_stages=8,
                    reconcile_interval_seconds=0.2) as (app, executor, address):
            jobs = api_grpc.JobServiceStub(grpc.insecure_channel(address))
            out.update(bench_create(jobs, n_validate, n_create))
            deadline = time.monotonic() + 60
            while len(executor.specs) < 8 and time.monotonic() < deadline:
                time.sleep(0.1)
            out["ingest_events_per_second"] = bench_ingest(address, executor, per_stream)
            spec = list(executor.specs.values())[0]
            out["watch_delivery_p99_ms"], out["watch_delivery_p50_ms"] = bench_watch(
                app, address, spec, 50, watch_events)
        out.update(bench_scrape_and_rss(root, n_scrape))
        out["list_page_p99_ms_10000_jobs"] = {"sqlite": bench_list(None, root, n_list, pages)}
        try:
            pg = Postgres()
        except Exception as exc:  # report, don't hide: the figure is then missing
            out["list_page_p99_ms_10000_jobs"]["postgresql"] = None
            out["postgresql_error"] = str(exc)
        else:
            try:
                out["list_page_p99_ms_10000_jobs"]["postgresql"] = bench_list(
                    pg.url, root, n_list, pages)
            finally:
                pg.stop()
    if quick:
        out["note"] = (f"--quick: {n_scrape} jobs for scrape/RSS and {n_list} for list pages, "
                       "fewer than the names say")
    return _rounded(out)


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


# The targets on 2 cores: (figure, "<=" or ">=", bound).
TARGETS = (
    ("create_validate_p99_ms", "<=", 10.0),
    ("ingest_events_per_second", ">=", 20_000.0),
    ("watch_delivery_p99_ms", "<=", 50.0),
    ("scrape_ms_1000_jobs", "<=", 100.0),
    ("list_page_p99_ms_10000_jobs.sqlite", "<=", 20.0),
    ("list_page_p99_ms_10000_jobs.postgresql", "<=", 20.0),
    ("service_rss_mb_1000_jobs", "<=", 300.0),
)


def against_targets(figures: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target with the measured figure and whether it is met (None: not measured)."""
    out = {}
    for name, op, bound in TARGETS:
        value: Any = figures
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        met = None if value is None else (value <= bound if op == "<=" else value >= bound)
        out[name] = {"target": f"{op} {bound:g}", "measured": value, "met": met}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (CI smoke run)")
    parser.add_argument("--write", action="store_true",
                        help="also write docs/results/control_plane.json")
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.ERROR)
    load_at_start = os.getloadavg()[0]
    figures = run(args.quick)
    print(json.dumps(figures, sort_keys=True))
    if args.write:
        target = ROOT / "docs" / "results" / "control_plane.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        conditions = f"load average {load_at_start:.1f} at start on {os.cpu_count()} cores"
        if load_at_start >= 0.5:
            conditions += ": other processes shared the CPUs, so latencies are inflated"
        target.write_text(json.dumps({"figures": figures, "machine": machine(),
                                      "targets": against_targets(figures),
                                      "conditions": conditions,
                                      "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                   time.gmtime())},
                                     indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
