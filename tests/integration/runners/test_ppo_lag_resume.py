"""Resume restores everything: N iterations straight == k, SIGTERM, resume, N − k."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from saferlhf.runners.common.errors import EXIT_TRANSIENT
from saferlhf.runners.common.events import read_events
from saferlhf.runners.ppo_lag.tiny import build_tiny_policy, tiny_stage_config
from saferlhf.runners.ppo_lag.train import run
from saferlhf.runners.ppo_lag.trainer import Stopped


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.mark.slow
def test_sigterm_checkpoints_and_a_resumed_run_ends_where_a_straight_run_ends(
    tmp_path, monkeypatch
):
    policy = build_tiny_policy(tmp_path / "policy")
    # window 6 < 8 rollouts per iteration, so the restored window contents matter
    common = {"iterations": 4, "batch_size": 4, "episode_cost_window_size": 6, "threshold": -1.2,
              "checkpoint_every_steps": 1000}
    run(tiny_stage_config(policy, tmp_path / "straight", **common), None)

    out = tmp_path / "resumed"
    monkeypatch.setenv("SAFERLHF_FAULT_AFTER_STEPS", "3")  # SIGTERM during iteration 2
    with pytest.raises(Stopped) as stop:
        run(tiny_stage_config(policy, out, **common), None)
    assert stop.value.exit_code == EXIT_TRANSIENT
    assert (out / "checkpoints" / "latest").read_text() == "step-4"
    assert not (out / "model").exists()
    monkeypatch.delenv("SAFERLHF_FAULT_AFTER_STEPS")
    run(tiny_stage_config(policy, out, **common), None)

    a, b = _weights(tmp_path / "straight" / "model"), _weights(out / "model")
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key
    ra = json.loads((tmp_path / "straight" / "result.json").read_text())
    rb = json.loads((out / "result.json").read_text())
    assert rb["global_step"] == ra["global_step"] == 8
    assert rb["final_lambda"] == pytest.approx(ra["final_lambda"], rel=1e-6)
    assert rb["episode_cost"] == pytest.approx(ra["episode_cost"])
    events = read_events(out / "events.jsonl")
    assert any(e["type"] == "log" and e["message"].startswith("resumed from") for e in events)
    steps = [e["step"] for e in events if e["type"] == "metrics"
             and "train/lambda" in e["values"]]
    assert steps == list(range(1, 9))  # no step repeated or skipped across the restart
    lam_a = [e["values"]["train/lambda"] for e in read_events(tmp_path / "straight" /
             "events.jsonl") if e["type"] == "metrics" and "train/lambda" in e["values"]]
    lam_b = [e["values"]["train/lambda"] for e in events if e["type"] == "metrics"
             and "train/lambda" in e["values"]]
    assert lam_b == pytest.approx(lam_a, rel=1e-6)


@pytest.mark.slow
def test_a_checkpoint_from_another_world_size_refuses_to_resume(tmp_path):
    from saferlhf.runners.common.checkpoint import ResumeError

    policy = build_tiny_policy(tmp_path / "policy")
    cfg = tiny_stage_config(policy, tmp_path / "out", iterations=2, checkpoint_every_steps=1)
    run(cfg, None)
    ckpt = tmp_path / "out" / "checkpoints" / (tmp_path / "out" / "checkpoints" / "latest"
                                               ).read_text()
    manifest = json.loads((ckpt / "manifest.json").read_text())
    manifest["world_size"] = 2
    (ckpt / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ResumeError, match="2 processes"):
        run(cfg, None)


@pytest.mark.slow
def test_a_deepspeed_run_resumes_its_engines_after_sigterm(tmp_path):
    """ZeRO-2 through the CLI: exit 75 after the SIGTERM checkpoint, then resume to the same
    actor as a straight run (DeepSpeed saves and restores the engines' optimizer shards)."""
    import os
    import subprocess
    import sys

    from tests.tools import ROOT

    policy = build_tiny_policy(tmp_path / "policy")
    common = {"iterations": 3, "checkpoint_every_steps": 1000,
              "backend": {"kind": "deepspeed", "deepspeed": {"zero_stage": 2}}}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}

    def cli(name: str, **extra_env: str) -> int:
        cfg = tiny_stage_config(policy, tmp_path / name, **common)
        stage = tmp_path / f"{name}.json"
        stage.write_text(cfg.model_dump_json())
        proc = subprocess.run([sys.executable, "-m", "saferlhf.runners.ppo_lag",
                               "--config", str(stage)],
                              cwd=ROOT, env={**env, **extra_env}, capture_output=True,
                              text=True, timeout=600)
        return proc.returncode

    assert cli("resumed", SAFERLHF_FAULT_AFTER_STEPS="1") == EXIT_TRANSIENT
    assert (tmp_path / "resumed" / "checkpoints" / "step-1" / "actor").is_dir()
    assert cli("resumed") == 0
    assert cli("straight") == 0
    a, b = _weights(tmp_path / "straight" / "model"), _weights(tmp_path / "resumed" / "model")
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key
