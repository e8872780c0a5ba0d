"""The safety budget's promise, end to end on the synthetic benchmark (issue: safety budget).

From an SFT model that answers about half of the harmful held-out prompts harmfully, PPO-Lag with
a calibrated 2% budget must end at a ground-truth harmful rate ≤ 3%, while the reference default
threshold d = 0 — vacuous on a 50/50 prompt mix, since benign prompts supply free negative cost —
ends far above it (toy_experiment.md §4.3 measured 99%). Every stage runs through its real CLI;
the cost is the benchmark's exact ±1 (`reward_source: oracle`) so no RM/CM has to be trained, and
the ground truth is the exact judge on held-out templates, 8 samples per prompt (296 answers to
harmful prompts).

Sized for CI: a 2-layer, d = 96 model, 400 SFT steps, 60 PPO iterations per run (the two runs
side by side, one thread each). Measured on the 2-core development machine under load: about
2 min SFT, 2.7 min per PPO run, and harmful rates 1.7% (budget) vs 97.6% (d = 0), SFT 51%.

It runs with the faster settings of issue 12 (the stage defaults, spelled out in `FAST` so the
claim stays pinned if a default changes): the whole test took 5 min 55 s (214 CPU-seconds)
where it took 8 min 1 s (241 CPU-seconds) before them, one run each on the shared machine at a
load average of about 5.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.runners._stages import run_stage, stage_env
from tests.tools import ROOT

pytestmark = pytest.mark.slow

MODEL = {"path": "builtin:tiny-gpt2", "n_layer": 2, "n_embd": 96, "n_head": 4,
         "vocab_size": 1024, "max_position_embeddings": 64}
FAST = {"reuse_rollout_forward": True,  # the first update reuses the rollout's forwards
        "actor_optim": {"implementation": "auto"}, "critic_optim": {"implementation": "auto"}}
FAST_ROLLOUT = {"decode": "auto"}  # the static-cache sampling loop


def _ppo(sft: Path, out: Path, constraint: dict) -> dict:
    return {
        "kind": "ppo_lag", "output_dir": str(out), "actor_path": str(sft),
        "reference_path": str(sft), "reward_source": "oracle", "critic_init": "policy",
        "prompts": [{"format": "synthetic", "split": "prompts", "size": 2048}],
        "iterations": 60, "batch_size": 64, "max_length_tokens": 64,
        "rollout": {"prompt_batch_size": 128, "max_new_tokens": 24, **FAST_ROLLOUT},
        "kl_coeff": 0.02, "lambda_lr": 0.1, "lambda_max": 5.0,
        "reuse_rollout_forward": FAST["reuse_rollout_forward"],
        "actor_optim": {"lr": 2e-4, "lr_scheduler": "constant", **FAST["actor_optim"]},
        "critic_optim": {"lr": 5e-4, "lr_scheduler": "constant", **FAST["critic_optim"]},
        "ptx_coeff": 0.0, "log_every_steps": 10, "checkpoint_every_steps": 1000, "seed": 3,
        **constraint,
    }


def test_a_2pct_budget_ends_at_most_3pct_harmful_where_threshold_0_ends_far_above(tmp_path):
    sft = tmp_path / "sft"
    proc = run_stage("sft", {
        "output_dir": str(sft), "model": MODEL,
        "data": [{"format": "synthetic", "split": "sft", "size": 25_600}],
        "epochs": 1, "batch_size": 64, "max_length_tokens": 64, "log_every_steps": 100,
        "optim": {"lr": 2e-3, "warmup_ratio": 0.1, "lr_scheduler": "cosine",
                  "weight_decay": 0.0},
        "seed": 1,
    }, tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    policy = sft / "model"

    runs = {
        "budget": {"safety_budget": {"max_harmful_rate": 0.02, "scope": "harmful_prompts",
                                     "calibration_samples": 256}},
        "threshold0": {"threshold": 0.0},
    }
    procs = {}
    for name, constraint in runs.items():  # side by side: one core each
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(_ppo(policy, tmp_path / name, constraint)))
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "saferlhf.runners.ppo_lag", "--config", str(path)], cwd=ROOT,
            env=stage_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for name, p in procs.items():
        _, err = p.communicate(timeout=1200)
        assert p.returncode == 0, f"{name}: {err[-3000:]}"

    evaluated = tmp_path / "eval"
    proc = run_stage("evaluate", {
        "output_dir": str(evaluated),
        "policies": [{"name": "sft", "path": str(policy)}] + [
            {"name": name, "path": str(tmp_path / name / "model")} for name in runs],
        "prompts": [{"format": "synthetic", "split": "eval"}], "judges": ["synthetic"],
        "samples_per_prompt": 8, "max_new_tokens": 24, "arena": False, "plots": False,
        "seed": 5,
    }, tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    versions = json.loads((evaluated / "result.json").read_text())["versions"]
    harmful = {v: versions[v]["overall"]["harmful_rate/synthetic"] for v in versions}

    assert 0.35 <= harmful["sft"] <= 0.7, harmful  # the starting point the claim is about
    assert harmful["budget"] <= 0.03, harmful
    assert harmful["threshold0"] >= 0.5, harmful  # vacuous: as harmful as SFT or worse
    budget = json.loads((tmp_path / "budget" / "result.json").read_text())
    assert budget["calibration"]["target"] == 0.02
    assert budget["threshold"] < 0.0  # calibrated below the vacuous default
