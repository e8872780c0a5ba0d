"""bench/control_plane.py --quick runs end to end and prints one JSON line with every figure."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.tools import ROOT

FIGURES = ("create_validate_p99_ms", "create_p99_ms", "ingest_events_per_second",
           "watch_delivery_p99_ms", "scrape_ms_1000_jobs", "service_rss_mb_1000_jobs")


@pytest.mark.slow
def test_the_quick_benchmark_prints_one_json_line_with_every_figure():
    result = subprocess.run([sys.executable, "-m", "bench.control_plane", "--quick"], cwd=ROOT,
                            capture_output=True, text=True, timeout=1200,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    figures = json.loads(lines[0])
    for name in FIGURES:
        assert isinstance(figures[name], float | int) and figures[name] > 0, name
    assert figures["list_page_p99_ms_10000_jobs"]["sqlite"] > 0
    assert "postgresql" in figures["list_page_p99_ms_10000_jobs"]
    assert figures["service_rss_jobs_listed"] == 200
