"""bench/rollout.py prints one JSON line: HF vs vLLM tokens/s, weight-sync seconds, a GPU row."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.tools import ROOT


@pytest.mark.slow
def test_the_quick_rollout_bench_prints_one_json_line_of_figures(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "rollout.json"
    proc = subprocess.run([sys.executable, "-m", "bench.rollout", "--quick", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stdout[-2000:]
    figures = json.loads(lines[0])
    (cell,) = figures["cpu"]["grid"]["cells"]
    assert (cell["batch"], cell["new_tokens"]) == (8, 16)
    for engine in ("hf", "vllm"):
        assert 0 < cell[engine]["tokens"] <= 8 * 16
        assert cell[engine]["tokens_per_second"] > 0
    sync = figures["cpu"]["weight_sync"]["grid"]
    assert sync["syncs"] == 5 and 0 < sync["mean_seconds"] <= sync["max_seconds"]
    assert figures["gpu"]["status"] == "not measured"
    assert figures["machine"]["load_average_1min_at_end"] >= 0
    assert json.loads(out.read_text()) == figures
    table = out.with_suffix(".md").read_text()
    assert f"| 8 | 16 | {cell['hf']['tokens_per_second']:,} |" in table
