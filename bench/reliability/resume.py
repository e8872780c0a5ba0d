"""Runner SIGKILL and resume: run a stage CLI straight, or SIGKILLed at a point of a checkpoint
write or at a moment of its life, then again (what the service's retry does); compare the two
outcomes bit for bit — final weights, result.json, and the value logged for every step's metric
(a resumed run logs the steps after its checkpoint twice; the last value of each counts).
Used by tests/chaos/test_runner_kill.py, test_ppo_lag_kill.py and `python -m bench.reliability`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.reliability.service import ROOT

KILL_ENV = "SAFERLHF_FAULT_KILL_IN_CHECKPOINT"
POINTS = ("started", "state_written", "manifest_written", "renamed", "marked")
# A tiny GPT-2 built from config (tests/integration/runners/_stages.py has the same one).
TINY = {"path": "builtin:tiny-gpt2", "n_layer": 2, "n_embd": 32, "n_head": 2, "vocab_size": 320,
        "max_position_embeddings": 128}


def stage_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a stage run outside the service: offline, one thread, no stream."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(ROOT))
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT",
                "SAFERLHF_EVENTS_ADDR", "SAFERLHF_FAULT_AFTER_STEPS", KILL_ENV):
        env.pop(var, None)
    env.update(extra or {})
    return env


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


# ---- the verdicts of bench.reliability ---------------------------------------------------------

PPO_COMMON = {"iterations": 4, "batch_size": 4, "episode_cost_window_size": 6, "threshold": -1.2,
              "checkpoint_every_steps": 2}


def _verdict(stage: str, fault: str, straight: Path, out: Path, killed_code: int,
             resumed_code: int, err: str) -> dict[str, Any]:
    differences = same_outcome(straight, out) if resumed_code == 0 else ["the rerun failed"]
    resumed_from = [e["message"].split()[2] for e in map(json.loads, (
        out / "events.jsonl").read_text().splitlines()) if e["type"] == "log"
        and str(e.get("message", "")).startswith("resumed from")]
    return {"stage": stage, "fault": fault, "killed_exit": killed_code,
            "rerun_exit": resumed_code, "resumed_from": resumed_from,
            "bit_equal": not differences and killed_code == -9,
            "differences": differences[:5], "rerun_error_tail": err[-500:] if resumed_code
            else ""}


def resume_trials(root: Path, log: Any = None) -> dict[str, Any]:
    """SFT killed at each point of a checkpoint write and at three moments; PPO-Lag killed at
    three points of a checkpoint write and at two moments. Each rerun against a straight run."""
    from saferlhf.runners.ppo_lag.tiny import build_tiny_policy, tiny_stage_config

    verdicts = []
    straight = root / "sft-straight" / "sft"
    code, err = run("sft", sft_config(straight))
    assert code == 0, err[-2000:]
    faults: list[tuple[str, str, Any]] = [("sft", f"SIGKILL at {p}@8", p) for p in POINTS]
    faults += [("sft", f"SIGKILL after {n} of 16 steps' metrics", n) for n in (4, 8, 12)]
    for i, (stage, fault, how) in enumerate(faults):
        out = root / f"sft-{i}" / "sft"
        cfg = sft_config(out)
        if isinstance(how, str):
            killed, _ = run("sft", cfg, env={KILL_ENV: f"{how}@8"})
        else:
            killed, _ = kill_when("sft", cfg, how)
        resumed, err = run("sft", cfg)
        verdicts.append(_verdict(stage, fault, straight, out, killed, resumed, err))
        if log:
            log(f"resume: {stage} {fault}: bit-equal {verdicts[-1]['bit_equal']}")
    policy = build_tiny_policy(root / "policy")

    def ppo_cfg(out: Path) -> dict[str, Any]:
        return json.loads(tiny_stage_config(policy, out, **PPO_COMMON).model_dump_json())

    straight = root / "ppo-straight" / "ppo"
    code, err = run("ppo_lag", ppo_cfg(straight))
    assert code == 0, err[-2000:]
    faults = [("ppo_lag", f"SIGKILL at {p}@4", p) for p in ("state_written", "renamed",
                                                            "marked")]
    faults += [("ppo_lag", f"SIGKILL after {n} of 8 steps' metrics", n) for n in (3, 6)]
    for i, (stage, fault, how) in enumerate(faults):
        out = root / f"ppo-{i}" / "ppo"
        cfg = ppo_cfg(out)
        if isinstance(how, str):
            killed, _ = run("ppo_lag", cfg, env={KILL_ENV: f"{how}@4"})
        else:
            killed, _ = kill_when("ppo_lag", cfg, how)
        resumed, err = run("ppo_lag", cfg)
        verdicts.append(_verdict(stage, fault, straight, out, killed, resumed, err))
        if log:
            log(f"resume: {stage} {fault}: bit-equal {verdicts[-1]['bit_equal']}")
    return {"comparison": "torch.equal on every weight tensor, == on result.json and on the "
                          "last value logged for each (step, metric): no tolerance",
            "runs": len(verdicts), "bit_equal": sum(v["bit_equal"] for v in verdicts),
            "verdicts": verdicts}
