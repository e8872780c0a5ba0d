"""`python -m saferlhf.runners.reward` end to end on CPU: outputs, metrics, learning, resume, bad
rows."""

from __future__ import annotations

import json

import pytest
import torch

from tests.integration.runners._stages import (
    events_of,
    load_weights,
    make_policy,
    metric_keys,
    run_stage,
)


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    return make_policy(tmp_path_factory.mktemp("policy") / "model")


def reward_config(out, policy, **over):
    cfg = {"output_dir": str(out), "seed": 5, "policy_path": str(policy),
           "data": [{"format": "synthetic", "split": "preference", "size": 120}],
           "eval_split_ratio": 0.2, "batch_size": 16, "epochs": 2, "max_length_tokens": 96,
           "log_every_steps": 2, "checkpoint_every_steps": 3, "optim": {"lr": 1e-3}}
    cfg.update(over)
    return cfg


def test_reward_model_trains_from_the_policy_through_its_cli(tmp_path, policy):
    out = tmp_path / "rm"
    proc = run_stage("reward", reward_config(out, policy), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {"train/loss", "train/accuracy", "train/lr", "train/epoch", "eval/accuracy",
            "eval/reward_mean", "eval/reward_std"} <= metric_keys(out)
    result = json.loads((out / "result.json").read_text())
    assert result["train/step"] == 12 and 0.0 <= result["eval/accuracy"] <= 1.0
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["score_type"] == "reward" and config["count"] > 0
    start, final = load_weights(policy), load_weights(out / "model")
    changed = [k for k in final if k.startswith("backbone.")
               and not torch.equal(final[k], start["transformer." + k.removeprefix("backbone.")])]
    assert len(changed) > 10
    assert final["score_head.bias"].abs().item() > 0  # the head trained from its zero bias
    from saferlhf.runners.common.score_model import ScoreModel

    assert ScoreModel.from_pretrained(out / "model").config.score_type == "reward"
    assert events_of(out, "artifact")[0]["path"] == str(out / "model")


def test_reward_resumed_after_sigterm_ends_with_the_same_weights_as_a_straight_run(
        tmp_path, policy):
    straight = run_stage("reward", reward_config(tmp_path / "a", policy), tmp_path)
    assert straight.returncode == 0, straight.stderr[-3000:]
    cfg = reward_config(tmp_path / "b", policy)
    stopped = run_stage("reward", cfg, tmp_path, env={"SAFERLHF_FAULT_AFTER_STEPS": "5"})
    assert stopped.returncode == 75, stopped.stderr[-3000:]
    assert events_of(tmp_path / "b", "checkpoint")[-1]["step"] == 5
    resumed = run_stage("reward", cfg, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = load_weights(tmp_path / "a" / "model"), load_weights(tmp_path / "b" / "model")
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key
    stats = [json.loads((tmp_path / run / "model" / "config.json").read_text()) for run in "ab"]
    for key in ("mean", "var", "count"):  # the normaliser stats are resumed too
        assert stats[1][key] == pytest.approx(stats[0][key], abs=1e-6), key


def test_a_preference_row_with_a_missing_field_exits_2_naming_file_row_and_field(
        tmp_path, policy):
    data = tmp_path / "prefs.jsonl"
    good = {"input": "hi", "answer": "hello there", "other_answer": "go away", "better": True}
    bad = dict(good)
    del bad["other_answer"]
    data.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    cfg = reward_config(tmp_path / "out", policy,
                        data=[{"format": "jsonl", "kind": "preference", "path": str(data)}])
    proc = run_stage("reward", cfg, tmp_path)
    assert proc.returncode == 2
    assert str(data) in proc.stderr and "row 2" in proc.stderr
    assert "other_answer" in proc.stderr and "Traceback" not in proc.stderr


def test_identical_responses_exit_2_before_training(tmp_path, policy):
    data = tmp_path / "prefs.jsonl"
    row = {"input": "hi", "answer": "same", "other_answer": "same", "better": True}
    data.write_text(json.dumps(row) + "\n")
    cfg = reward_config(tmp_path / "out", policy,
                        data=[{"format": "jsonl", "kind": "preference", "path": str(data)}])
    proc = run_stage("reward", cfg, tmp_path)
    assert proc.returncode == 2 and "row 1" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "checkpoints").exists()
