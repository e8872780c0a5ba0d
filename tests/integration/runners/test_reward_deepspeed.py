"""The DeepSpeed backend (ZeRO 2 and 3, one and two processes) and torchrun DDP on gloo.

All slow: each run starts DeepSpeed (about 30–60 s on a loaded 2-core machine).
"""

from __future__ import annotations

import json

import pytest
import torch

from tests.integration.runners._stages import load_weights, make_policy, metric_keys, run_stage

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    return make_policy(tmp_path_factory.mktemp("policy") / "model")


def config(out, policy, backend=None, **over):
    cfg = {"output_dir": str(out), "seed": 7, "policy_path": str(policy),
           "data": [{"format": "synthetic", "split": "preference", "size": 80}],
           "eval_split_ratio": 0.2, "batch_size": 8, "epochs": 1, "max_length_tokens": 96,
           "log_every_steps": 2, "checkpoint_every_steps": 100, "optim": {"lr": 1e-3}}
    if backend is not None:
        cfg["backend"] = backend
    cfg.update(over)
    return cfg


def zero(stage: int, **extra) -> dict:
    return {"kind": "deepspeed", "deepspeed": {"zero_stage": stage, **extra}}


def assert_same_weights(a_dir, b_dir, atol=1e-5):
    a, b = load_weights(a_dir / "model"), load_weights(b_dir / "model")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=atol), key


def test_zero2_in_one_process_trains_the_same_weights_as_the_plain_backend(tmp_path, policy):
    plain = run_stage("reward", config(tmp_path / "plain", policy), tmp_path)
    assert plain.returncode == 0, plain.stderr[-3000:]
    ds = run_stage("reward", config(tmp_path / "z2", policy, zero(2)), tmp_path)
    assert ds.returncode == 0, ds.stderr[-3000:]
    assert_same_weights(tmp_path / "plain", tmp_path / "z2")


def test_zero3_in_one_process_resumes_after_sigterm_to_the_same_weights(tmp_path, policy):
    straight = run_stage("reward", config(tmp_path / "a", policy, zero(3)), tmp_path)
    assert straight.returncode == 0, straight.stderr[-3000:]
    cfg = config(tmp_path / "b", policy, zero(3))
    stopped = run_stage("reward", cfg, tmp_path, env={"SAFERLHF_FAULT_AFTER_STEPS": "4"})
    assert stopped.returncode == 75, stopped.stderr[-3000:]
    assert (tmp_path / "b" / "checkpoints" / "step-4" / "model").is_dir()  # DeepSpeed's folder
    resumed = run_stage("reward", cfg, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_weights(tmp_path / "a", tmp_path / "b")


@pytest.mark.parametrize("backend", [zero(2), zero(3), {"kind": "plain"}],
                         ids=["zero2", "zero3", "ddp-gloo"])
def test_two_processes_under_torchrun_train_and_save_one_model(tmp_path, policy, backend):
    out = tmp_path / "out"
    proc = run_stage("reward", config(out, policy, backend), tmp_path, nproc=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {"train/loss", "train/accuracy", "eval/accuracy"} <= metric_keys(out)
    result = json.loads((out / "result.json").read_text())
    assert result["train/step"] == 4  # 64 pairs / (8 per rank × 2 ranks)
    from saferlhf.runners.common.score_model import ScoreModel

    model = ScoreModel.from_pretrained(out / "model")
    start = load_weights(policy)
    assert model.backbone.wte.weight.shape == start["transformer.wte.weight"].shape
    assert not torch.equal(model.backbone.wte.weight, start["transformer.wte.weight"])
    assert not (out / "stage.rank1.log").read_text().count("Traceback")


def test_sft_under_zero3_with_cpu_offload_saves_a_full_model(tmp_path):
    from saferlhf.runners.common.models import load_policy

    from tests.integration.runners._stages import TINY

    out = tmp_path / "sft"
    cfg = {"output_dir": str(out), "seed": 1, "model": TINY,
           "data": [{"format": "synthetic", "split": "sft", "size": 64}],
           "batch_size": 16, "epochs": 1, "max_length_tokens": 96, "log_every_steps": 1,
           "optim": {"lr": 2e-3}, "backend": zero(3, offload="all")}
    proc = run_stage("sft", cfg, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    model, tok = load_policy(out / "model")
    assert model.get_input_embeddings().weight.shape == (len(tok), TINY["n_embd"])
    assert "train/loss" in metric_keys(out)


def test_a_stale_jit_build_lock_left_by_a_killed_build_does_not_hang_the_stage(tmp_path, policy):
    """A build killed mid-way leaves torch's `lock` in the op's folder; torch then waits for it
    forever on every load. This hung every DeepSpeed stage of one CI run (jit_locks.py)."""
    import os
    import shutil
    import time

    from saferlhf.runners.common.jit_locks import extensions_root

    root = tmp_path / "torch_extensions"
    cached = [p for p in (extensions_root().glob("**/deepspeed_shm_comm"))
              if (p / "deepspeed_shm_comm.so").exists()]
    op = root / "deepspeed_shm_comm"
    if cached:  # reuse this machine's build (else the op is built again here, ~30 s)
        shutil.copytree(cached[0], op)
    op.mkdir(parents=True, exist_ok=True)
    lock = op / "lock"
    lock.touch()
    an_hour_ago = time.time() - 3600
    os.utime(lock, (an_hour_ago, an_hour_ago))
    proc = run_stage("reward", config(tmp_path / "out", policy, zero(2)), tmp_path,
                     env={"TORCH_EXTENSIONS_DIR": str(root)}, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "stale JIT build lock" in proc.stderr and str(lock) in proc.stderr
    assert not lock.exists()
