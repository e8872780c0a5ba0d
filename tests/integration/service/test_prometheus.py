"""A REAL Prometheus (the Debian package, started by this test on 127.0.0.1) scrapes the service's
/metrics every second while the test feeds metric events into the App; the test then reads
saferlhf_lagrange_multiplier back through Prometheus's HTTP query API."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from saferlhf.service.metrics import serve_metrics

from tests.tools import require_tool
from tests.unit.service.scheduler.helpers import add_job, make_app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _query(port: int, promql: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


@pytest.fixture
def prometheus(tmp_path: Path):
    binary = require_tool("prometheus")

    def start(target_port: int) -> int:
        port = _free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: saferlhf\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]\n"
        )
        proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("w"),
        )
        procs.append(proc)
        return port

    procs: list[subprocess.Popen] = []
    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_prometheus_scrapes_the_lagrange_multiplier_fed_through_the_app(
        tmp_path: Path, prometheus) -> None:
    app, ex, _ = make_app(tmp_path)
    add_job(app, tmp_path, job_id="j-prom", pipeline=(("r1/ppo_lag", "ppo_lag", ()),))
    app.scheduler.tick()
    server, _thread = serve_metrics(app.registry, "127.0.0.1:0")
    try:
        prom_port = prometheus(server.server_port)
        run = ex.run_of("r1/ppo_lag")
        token = run.spec.env["SAFERLHF_STAGE_TOKEN"]
        lam = [1.0, 1.25, 1.5]
        results: list[dict] = []
        deadline = time.monotonic() + 20
        step = 0
        while time.monotonic() < deadline:
            step += 1
            value = lam[min(step - 1, len(lam) - 1)]
            event = ex.emit("r1/ppo_lag", "metrics", step=step,
                            values={"train/lambda": value, "train/episode_cost": 0.1})
            app.report_events(run.spec.attempt_id, token, [event])
            try:
                results = _query(prom_port, 'saferlhf_lagrange_multiplier == 1.5')
            except OSError:  # not listening yet
                results = []
            if results:
                break
            time.sleep(0.5)
        assert results, "Prometheus never returned saferlhf_lagrange_multiplier == 1.5"
        labels = results[0]["metric"]
        assert labels["__name__"] == "saferlhf_lagrange_multiplier"
        assert (labels["saferlhf_job"], labels["project"], labels["round"], labels["stage"]) == (
            "j-prom", "p", "1", "ppo_lag")
        assert labels["job"] == "saferlhf"  # Prometheus's own target label stays untouched
        assert float(results[0]["value"][1]) == 1.5
        jobs = _query(prom_port, 'saferlhf_jobs{state="RUNNING"}')
        assert jobs and float(jobs[0]["value"][1]) == 1.0
    finally:
        server.shutdown()
