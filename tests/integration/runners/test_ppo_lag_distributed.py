"""PPO-Lag under torchrun (2 CPU processes, gloo) and DeepSpeed ZeRO-2/3, through the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from saferlhf.runners.common.dist import free_port
from saferlhf.runners.common.events import read_events
from saferlhf.runners.ppo_lag.tiny import (
    build_tiny_policy,
    build_tiny_score_model,
    tiny_stage_config,
)
from saferlhf.runners.ppo_lag.train import run

from tests.tools import ROOT


@pytest.fixture(scope="module")
def policy(tmp_path_factory) -> Path:
    return build_tiny_policy(tmp_path_factory.mktemp("dist") / "policy")


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def _cli(cfg, tmp_path: Path, *, nproc: int = 1) -> subprocess.CompletedProcess:
    stage = tmp_path / f"{Path(cfg.output_dir).name}.json"
    stage.write_text(cfg.model_dump_json())
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
               f"--master_port={free_port()}", "-m", "saferlhf.runners.ppo_lag",
               "--config", str(stage)]
    else:
        cmd = [sys.executable, "-m", "saferlhf.runners.ppo_lag", "--config", str(stage)]
    return subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.mark.slow
def test_two_processes_average_the_episode_cost_of_both_ranks_windows(policy, tmp_path):
    root = tmp_path / "scores"
    rm = build_tiny_score_model(root / "rm", policy, "reward", seed=1)
    cm = build_tiny_score_model(root / "cm", policy, "cost", seed=2)
    cfg = tiny_stage_config(policy, tmp_path / "out", reward_source="model",
                            reward_model_path=str(rm), cost_model_path=str(cm),
                            checkpoint_every_steps=1)
    proc = _cli(cfg, tmp_path, nproc=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = Path(cfg.output_dir)
    steps = [e for e in read_events(out / "events.jsonl") if e["type"] == "metrics"]
    assert [e["step"] for e in steps] == [1, 2]  # rank 0 alone writes events
    state = torch.load(out / "checkpoints" / "step-1" / "state.pt", weights_only=False)
    windows = state["windows"]
    assert len(windows) == 2 and all(len(w) == 8 for w in windows)
    assert windows[0] != windows[1]  # each rank rolled out its own prompts
    expected = (sum(windows[0]) / 8 + sum(windows[1]) / 8) / 2  # SUM of rank means / 2
    assert steps[0]["values"]["train/episode_cost"] == pytest.approx(expected, rel=1e-5)
    assert (out / "model" / "model.safetensors").exists()
    assert not (out / "stage.rank1.log").read_text().count("Traceback")


@pytest.mark.slow
@pytest.mark.parametrize("zero_stage", [2, 3])
def test_deepspeed_zero_trains_the_same_actor_as_plain_pytorch(policy, tmp_path, zero_stage):
    plain = tiny_stage_config(policy, tmp_path / "plain")
    run(plain, None)
    ds = tiny_stage_config(policy, tmp_path / f"zero{zero_stage}",
                           backend={"kind": "deepspeed", "deepspeed": {"zero_stage": zero_stage}})
    proc = _cli(ds, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = _weights(tmp_path / "plain" / "model")
    b = _weights(tmp_path / f"zero{zero_stage}" / "model")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5), key
