"""Checkpoints: atomic layout, full RNG restore, loud failures on incomplete resumes, SIGTERM."""

import json
import os
import random
import signal

import numpy as np
import pytest
import torch
from saferlhf.runners.common import checkpoint as ckpt


def test_a_checkpoint_restores_state_and_every_rng(tmp_path):
    ckpt.seed_everything(3)
    saved = ckpt.save_checkpoint(tmp_path, 7, {"loop": {"step": 7}, "w": torch.ones(2)})
    expected = (random.random(), float(np.random.rand()), torch.rand(1).item())
    random.random(), np.random.rand(), torch.rand(1)  # move every generator on
    path = ckpt.latest_checkpoint(tmp_path)
    assert path == saved == tmp_path / "checkpoints" / "step-7"
    state = ckpt.load_checkpoint(path, expected_keys=["loop", "w"])
    assert state["loop"] == {"step": 7} and torch.equal(state["w"], torch.ones(2))
    assert (random.random(), float(np.random.rand()), torch.rand(1).item()) == expected


def test_only_complete_checkpoints_are_kept_and_latest_is_the_newest(tmp_path):
    for step in (1, 2, 3):
        ckpt.save_checkpoint(tmp_path, step, {"loop": {}}, keep=2)
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-2", "step-3"]
    assert (root / "latest").read_text() == "step-3"


def test_no_checkpoint_means_a_fresh_start(tmp_path):
    assert ckpt.latest_checkpoint(tmp_path) is None


def test_a_resume_missing_state_fails_loudly(tmp_path):
    path = ckpt.save_checkpoint(tmp_path, 1, {"loop": {}})
    with pytest.raises(ckpt.ResumeError, match="lacks.*optimizer"):
        ckpt.load_checkpoint(path, expected_keys=["loop", "optimizer"])


def test_a_resume_with_another_world_size_fails_loudly(tmp_path):
    path = ckpt.save_checkpoint(tmp_path, 1, {"loop": {}})
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["world_size"] = 2
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ckpt.ResumeError, match="2 processes"):
        ckpt.load_checkpoint(path, expected_keys=["loop"])


def test_a_missing_rng_file_or_dangling_latest_fails_loudly(tmp_path):
    path = ckpt.save_checkpoint(tmp_path, 1, {"loop": {}})
    (path / "rng-rank0.pt").unlink()
    with pytest.raises(ckpt.ResumeError, match="rng-rank0"):
        ckpt.load_checkpoint(path, expected_keys=["loop"])
    (tmp_path / "checkpoints" / "latest").write_text("step-99")
    with pytest.raises(ckpt.ResumeError, match="step-99"):
        ckpt.latest_checkpoint(tmp_path)


def test_sigterm_sets_the_stop_flag_instead_of_killing(monkeypatch):
    previous = signal.getsignal(signal.SIGTERM)
    try:
        stop = ckpt.StopSignal()
        assert not stop.should_stop()
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.should_stop()
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_the_fault_hook_signals_after_the_named_step(monkeypatch):
    monkeypatch.setenv(ckpt.FAULT_ENV, "2")
    previous = signal.getsignal(signal.SIGTERM)
    try:
        stop = ckpt.StopSignal()
        stop.after_step(1)
        assert not stop.requested
        stop.after_step(2)
        assert stop.requested
    finally:
        signal.signal(signal.SIGTERM, previous)
