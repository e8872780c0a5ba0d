"""Runner SIGKILL, including in the middle of a checkpoint write: the rerun (what the service's
retry does) resumes and ends bit-equal to an uninterrupted run with the same seed — weights,
result.json and the metric logged for every step; a partial checkpoint is never loaded; a
checkpoint whose position would skip work is refused instead of exiting 0 with less training.

CPU runs here are deterministic (one thread, fixed seeds, restored RNG states), so equality is
exact (torch.equal), no tolerance. The long versions (every kill point, PPO-Lag, kills at
moments spread over the run) are behind `-m chaos`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from bench.reliability.resume import (
    KILL_ENV,
    POINTS,
    kill_when,
    result,
    run,
    same_outcome,
    sft_config,
)


@pytest.fixture(scope="module")
def straight_sft(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("straight") / "sft"
    code, err = run("sft", sft_config(out))
    assert code == 0, err[-3000:]
    return out


def _killed_then_resumed(tmp_path: Path, point: str, step: int) -> tuple[Path, str]:
    out = tmp_path / "sft"
    cfg = sft_config(out)
    code, err = run("sft", cfg, env={KILL_ENV: f"{point}@{step}"})
    assert code == -9, f"expected SIGKILL, got {code}: {err[-2000:]}"
    root = out / "checkpoints"
    latest = (root / "latest").read_text() if (root / "latest").exists() else None
    code, err = run("sft", cfg)
    assert code == 0, err[-3000:]
    return out, latest or ""


def _expected_latest(point: str, step: int) -> str:
    """The checkpoint `latest` names after a kill at `point` of checkpoint `step`."""
    done = step if point == "marked" else step - 4
    return f"step-{done}" if done > 0 else ""


def _check(straight: Path, out: Path, latest: str, point: str, step: int) -> None:
    assert latest == _expected_latest(point, step), (point, latest)
    assert same_outcome(straight, out) == []
    resumed = [e for e in map(json.loads, (out / "events.jsonl").read_text().splitlines())
               if e["type"] == "log" and str(e.get("message", "")).startswith("resumed from")]
    assert [e["message"].split()[2] for e in resumed] == ([latest] if latest else [])


def test_sft_killed_after_writing_a_checkpoints_state_resumes_from_the_previous_one_bit_equal(
        tmp_path, straight_sft):
    """SIGKILL with `.tmp-step-8/state.pt` written but no manifest: the partial folder is
    ignored, the rerun resumes from step-4 and ends bit-equal to the straight run."""
    out, latest = _killed_then_resumed(tmp_path, "state_written", 8)
    _check(straight_sft, out, latest, "state_written", 8)


@pytest.mark.chaos
@pytest.mark.parametrize("point", POINTS)
def test_sft_killed_at_every_point_of_a_checkpoint_write_resumes_bit_equal(
        tmp_path, straight_sft, point):
    out, latest = _killed_then_resumed(tmp_path, point, 8)
    _check(straight_sft, out, latest, point, 8)


@pytest.mark.chaos
@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.8])
def test_sft_killed_at_a_moment_of_its_run_resumes_bit_equal(tmp_path, straight_sft, fraction):
    out = tmp_path / "sft"
    cfg = sft_config(out)
    code, seen = kill_when("sft", cfg, metrics_lines=max(1, int(16 * fraction)))
    assert code == -9, "the run ended before the kill"
    code, err = run("sft", cfg)
    assert code == 0, err[-3000:]
    assert same_outcome(straight_sft, out) == [], f"killed after {seen} metrics events"


def test_a_checkpoint_whose_position_skips_an_epoch_is_refused_not_resumed(tmp_path,
                                                                          straight_sft):
    """verl #7401: a resume that skips an epoch and exits 0. A checkpoint at step 4 that claims
    to be at the start of epoch 2 would train 12 of 16 steps; the runner exits 2 instead, names
    the problem, and writes no model."""
    out = tmp_path / "sft"
    cfg = sft_config(out)
    code, err = run("sft", cfg, env={KILL_ENV: "started@8"})
    assert code == -9, err[-2000:]
    state_file = out / "checkpoints" / "step-4" / "state.pt"
    state = torch.load(state_file, weights_only=False)
    state["loop"].update(epoch=1, batch_in_epoch=0)
    torch.save(state, state_file)
    code, err = run("sft", cfg)
    assert code == 2, err[-3000:]
    assert "data position" in err and "Traceback" not in err
    assert not (out / "model").exists()
    shutil.rmtree(out / "checkpoints")  # what the message says to do
    code, err = run("sft", cfg)
    assert code == 0 and result(out)["train/step"] == 16, err[-3000:]
