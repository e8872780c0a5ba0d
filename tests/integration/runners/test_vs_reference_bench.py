"""bench/vs_reference.py runs both sides in fresh processes and prints one JSON line with the
ratio, per-phase medians and equal sampled-token counts (a CI-sized smoke run: tiny models)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.tools import ROOT


@pytest.mark.slow
def test_the_quick_side_by_side_bench_prints_one_json_line_with_the_ratio(tmp_path):
    out = tmp_path / "vs_reference.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.vs_reference", "--configs", "gpt2-quick", "--pairs", "1",
         "--iterations", "1", "--rows", "fp32,without_reuse", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1
    figures = json.loads(lines[0])
    assert json.loads(out.read_text()) == figures
    run = figures["configs"]["gpt2-quick"]
    assert run["ratio"] == figures["ratio"]["gpt2-quick"] > 0
    assert run["same_sampled_tokens"] and run["ours"]["sampled_tokens_per_iteration"] == [8 * 16]
    for side in ("reference", "ours", "ours_without_reuse"):
        phases = run[side]["phases"]
        assert phases["generate"] > 0 and phases["actor"] > 0 and phases["critics"] > 0
    assert run["reference"]["phases"]["values"] > 0  # the reference's separate critic forwards
    assert run["ours"]["phases"]["values"] == 0  # reused by the first update
    assert run["ours_without_reuse"]["phases"]["values"] > 0
    assert run["ours_without_reuse"]["gain_of_the_speed_up"] > 0
    assert figures["machine"]["threads"] == 1
