"""PPO-Lag killed and resumed: the retry ends where an uninterrupted run with the same seed ends —
λ, its episode-cost window, every per-step metric, the result and the actor's weights, bit for
bit (one CPU thread, restored RNG states). The SIGKILL versions are behind `-m chaos`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from saferlhf.runners.common.errors import EXIT_TRANSIENT
from saferlhf.runners.ppo_lag.tiny import build_tiny_policy, tiny_stage_config

from bench.reliability.resume import KILL_ENV, kill_when, run, same_outcome

# 4 iterations × 2 micro-batches = 8 steps; window 6 < 8 rollouts, so the restored window matters
COMMON = {"iterations": 4, "batch_size": 4, "episode_cost_window_size": 6, "threshold": -1.2,
          "checkpoint_every_steps": 2}


@pytest.fixture(scope="module")
def policy(tmp_path_factory) -> Path:
    return build_tiny_policy(tmp_path_factory.mktemp("policy") / "policy")


@pytest.fixture(scope="module")
def straight(tmp_path_factory, policy) -> Path:
    out = tmp_path_factory.mktemp("straight") / "ppo"
    code, err = run("ppo_lag", _cfg(policy, out))
    assert code == 0, err[-3000:]
    return out


def _cfg(policy: Path, out: Path) -> dict:
    return json.loads(tiny_stage_config(policy, out, **COMMON).model_dump_json())


def test_sigterm_in_the_last_iteration_resumes_to_the_same_result(tmp_path, policy, straight):
    """The SIGTERM checkpoint after the last step: the resumed run has nothing left to train and
    must still report the last step's metrics (it reported episode_cost, reward … as null)."""
    out = tmp_path / "ppo"
    code, err = run("ppo_lag", _cfg(policy, out), env={"SAFERLHF_FAULT_AFTER_STEPS": "8"})
    assert code == EXIT_TRANSIENT, err[-3000:]
    code, err = run("ppo_lag", _cfg(policy, out))
    assert code == 0, err[-3000:]
    assert same_outcome(straight, out) == []
    assert json.loads((out / "result.json").read_text())["episode_cost"] is not None


@pytest.mark.chaos
@pytest.mark.parametrize("point", ["state_written", "renamed", "marked"])
def test_ppo_lag_killed_while_writing_a_checkpoint_resumes_bit_equal(tmp_path, policy, straight,
                                                                      point):
    out = tmp_path / "ppo"
    code, err = run("ppo_lag", _cfg(policy, out), env={KILL_ENV: f"{point}@4"})
    assert code == -9, err[-2000:]
    code, err = run("ppo_lag", _cfg(policy, out))
    assert code == 0, err[-3000:]
    assert same_outcome(straight, out) == []


@pytest.mark.chaos
@pytest.mark.parametrize("metrics_lines", [3, 6])
def test_ppo_lag_killed_at_a_moment_of_its_run_resumes_bit_equal(tmp_path, policy, straight,
                                                                  metrics_lines):
    out = tmp_path / "ppo"
    code, seen = kill_when("ppo_lag", _cfg(policy, out), metrics_lines)
    assert code == -9, "the run ended before the kill"
    code, err = run("ppo_lag", _cfg(policy, out))
    assert code == 0, err[-3000:]
    assert same_outcome(straight, out) == [], f"killed after {seen} metrics events"
