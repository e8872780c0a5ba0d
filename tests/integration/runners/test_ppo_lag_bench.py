"""bench/ppo_step.py prints one JSON line with the figures issue 3 asks for."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.tools import ROOT


@pytest.mark.slow
def test_the_quick_ppo_step_bench_prints_one_json_line_of_figures():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "bench.ppo_step", "--quick", "--backends",
                           "plain"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1
    figures = json.loads(lines[0])
    plain = figures["backends"]["plain"]
    assert "error" not in plain, plain
    assert set(plain["breakdown"]) == {"generate", "score", "reference_log_probs", "values",
                                       "actor", "critics"}
    # one micro-batch per iteration: the first update's critic forwards stand in for the
    # rollout's (reuse_rollout_forward), so the separate `values` phase takes no time
    assert plain["breakdown"]["values"] == 0
    assert all(v > 0 for k, v in plain["breakdown"].items() if k != "values")
    assert sum(plain["breakdown"].values()) <= plain["iteration_seconds"]
    assert 0.0 <= plain["overhead_ratio"] < 1.0
    assert plain["tokens_per_second"] > 0 and plain["peak_rss_mb"] > 0
    assert figures["backends"]["gpu"]["status"] == "not measured"
