"""Helpers of the runner-kill suite: run a stage CLI straight, or SIGKILLed at a point of a
checkpoint write or at a moment of its life, then resume it; compare the outcomes bit for bit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.integration.runners._stages import TINY, stage_env
from tests.tools import ROOT

KILL_ENV = "SAFERLHF_FAULT_KILL_IN_CHECKPOINT"


def sft_config(out: Path, **over: Any) -> dict[str, Any]:
    """16 optimizer steps in 2 epochs, a checkpoint every 4 (tests/integration/runners)."""
    cfg = {"kind": "sft", "output_dir": str(out), "seed": 3, "model": TINY,
           "data": [{"format": "synthetic", "split": "sft", "size": 160}],
           "eval_split_ratio": 0.2, "batch_size": 16, "epochs": 2, "max_length_tokens": 96,
           "log_every_steps": 1, "checkpoint_every_steps": 4,
           "optim": {"lr": 2e-3, "warmup_ratio": 0.1}}
    cfg.update(over)
    return cfg


def launch(kind: str, cfg: dict[str, Any], *, env: dict[str, str] | None = None
           ) -> subprocess.Popen:
    path = Path(cfg["output_dir"]).parent / f"{Path(cfg['output_dir']).name}-stage.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cfg))
    return subprocess.Popen([sys.executable, "-m", f"saferlhf.runners.{kind}", "--config",
                             str(path)], cwd=ROOT, env=stage_env(env),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def run(kind: str, cfg: dict[str, Any], *, env: dict[str, str] | None = None,
        timeout: float = 600) -> tuple[int, str]:
    proc = launch(kind, cfg, env=env)
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def kill_when(kind: str, cfg: dict[str, Any], metrics_lines: int, timeout: float = 600
              ) -> tuple[int, int]:
    """Start the stage and SIGKILL it (its whole session) once its events.jsonl holds
    `metrics_lines` metrics events; returns (exit status, metrics events seen at the kill)."""
    events = Path(cfg["output_dir"]) / "events.jsonl"
    proc = launch(kind, cfg)
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if events.exists():
            seen = sum('"type": "metrics"' in line for line in events.read_text().splitlines())
            if seen >= metrics_lines:
                os.kill(proc.pid, signal.SIGKILL)
                break
        time.sleep(0.02)
    proc.communicate(timeout=60)
    return proc.returncode, seen


def weights(out: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(out / "model" / "model.safetensors"))


def bit_equal(a: dict, b: dict) -> list[str]:
    """Names of tensors that differ in any bit (empty: identical)."""
    import torch

    return sorted(k for k in a.keys() | b.keys()
                  if k not in a or k not in b or not torch.equal(a[k], b[k]))


def last_metric_per_step(out: Path) -> dict[tuple[int, str], float]:
    """(step, metric) → the value logged last for it (a resumed run logs redone steps again)."""
    from saferlhf.runners.common.events import read_events

    values: dict[tuple[int, str], float] = {}
    for e in read_events(out / "events.jsonl"):
        if e["type"] == "metrics":
            for k, v in e["values"].items():
                values[(int(e["step"]), k)] = v
    return values


def result(out: Path) -> dict:
    return json.loads((out / "result.json").read_text())


def same_outcome(straight: Path, resumed: Path, *, ignore: tuple[str, ...] = ()) -> list[str]:
    """What differs between two runs' final weights, results and per-step metrics."""
    problems = [f"weight {k}" for k in bit_equal(weights(straight), weights(resumed))]
    ra = json.loads((straight / "result.json").read_text().replace(str(straight), "<out>"))
    rb = json.loads((resumed / "result.json").read_text().replace(str(resumed), "<out>"))
    problems += [f"result {k}: {ra.get(k)} != {rb.get(k)}" for k in ra.keys() | rb.keys()
                 if k not in ignore and ra.get(k) != rb.get(k)]
    ma, mb = last_metric_per_step(straight), last_metric_per_step(resumed)
    problems += [f"metric {k}: {ma.get(k)} != {mb.get(k)}" for k in ma.keys() | mb.keys()
                 if k[1] not in ignore and ma.get(k) != mb.get(k)]
    return problems
