"""/metrics fast path: the training families rendered from pre-built lines must read exactly as
prometheus_client's own exposition of the same registry, in the text format and OpenMetrics, and
series swept after retention must vanish from both."""

from __future__ import annotations

import gzip
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from saferlhf.service.metrics import Metrics, serve_metrics

OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


def _metrics() -> tuple[CollectorRegistry, Metrics]:
    registry = CollectorRegistry()
    m = Metrics(registry, retention_seconds=10, count_jobs=lambda: {("p", "RUNNING"): 2})
    for job in ("j-1", "j-2"):
        m.observe_event(job_id=job, project='p"q\\', round=1, kind="ppo_lag", now=5.0, event={
            "type": "metrics", "step": 7, "values": {
                "train/lambda": 1.5, "train/harmful_rate": 0.25, "eval/harmful_rate/kw": 1e-9}})
    m.attempt_finished("ppo_lag", "succeeded", 3.0)
    return registry, m


def _scrape(port: int, accept: str = "", gzip_ok: bool = False) -> tuple[str, str]:
    headers = {"Accept": accept} if accept else {}
    if gzip_ok:
        headers["Accept-Encoding"] = "gzip"
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=headers)
    with urllib.request.urlopen(req, timeout=10) as resp:
        body = resp.read()
        if resp.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        return body.decode(), resp.headers["Content-Type"]


def _without_created(text: str) -> list[str]:
    """Sorted lines, minus the `_created` timestamps (they differ between two collections)."""
    return sorted(line for line in text.splitlines() if "_created" not in line)


@pytest.mark.parametrize(("accept", "reference"), [
    ("", generate_latest), (OPENMETRICS, generate_openmetrics)])
def test_served_metrics_match_prometheus_clients_own_exposition(accept, reference) -> None:
    registry, _ = _metrics()
    server, _thread = serve_metrics(registry, "127.0.0.1:0")
    try:
        text, content_type = _scrape(server.server_port, accept, gzip_ok=True)
    finally:
        server.shutdown()
    expected = reference(registry).decode()
    assert _without_created(text) == _without_created(expected)
    assert 'saferlhf_lagrange_multiplier{project="p\\"q\\\\",round="1",saferlhf_job="j-1",' \
           'stage="ppo_lag"} 1.5' in text
    if accept:
        assert content_type.startswith("application/openmetrics-text")
        assert text.endswith("# EOF\n") and text.count("# EOF") == 1


def test_swept_series_leave_the_served_metrics() -> None:
    registry, m = _metrics()
    m.job_finished("j-1", "p", "SUCCEEDED", now=100.0)
    assert m.sweep(now=110.0) == 5  # last-event time, λ, step, two harmful ratios
    server, _thread = serve_metrics(registry, "127.0.0.1:0")
    try:
        text, _ = _scrape(server.server_port)
    finally:
        server.shutdown()
    assert 'saferlhf_job="j-1"' not in text
    assert text.count('saferlhf_job="j-2"') == 5
