"""`saferlhf run SPEC` end to end with real runners: an in-process service, live plain-line
progress (stdout is not a TTY here), a per-round report, exit 0 — and a bad spec exits 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tools import ROOT

TINY = Path(__file__).parent / "tiny_job.yaml"


def _saferlhf(*args: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "saferlhf.service", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_run_executes_a_tiny_job_and_prints_the_per_round_report(tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY.read_text())
    result = _saferlhf("run", str(spec), cwd=tmp_path, timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "stage r1/sft RUNNING" in out and "stage r1/evaluate SUCCEEDED" in out
    assert "job " in out and "SUCCEEDED" in out
    report = out[out.index("per-round report"):].splitlines()
    header, row = report[1].split(), report[2].split()
    assert header[:3] == ["ROUND", "harmful", "helpful"]
    assert row[0] == "1" and 0.0 <= float(row[1]) <= 1.0 and 0.0 <= float(row[2]) <= 1.0
    assert (tmp_path / ".saferlhf" / "state.db").exists()
    assert "Traceback" not in result.stderr


def test_run_with_a_bad_spec_exits_2_with_the_fields_and_no_traceback(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(TINY.read_text().replace("lambda_lr: 0.1", "lambda_lr: -0.1"))
    result = _saferlhf("run", str(spec), cwd=tmp_path, timeout=300)
    assert result.returncode == 2
    assert "spec.stages.ppo_lag.lambda_lr" in result.stderr
    assert "Traceback" not in result.stderr
