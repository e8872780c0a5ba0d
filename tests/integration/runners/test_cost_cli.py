"""`python -m saferlhf.runners.cost` end to end on CPU, token-wise loss; bad safety labels exit
2."""

from __future__ import annotations

import json

import pytest

from tests.integration.runners._stages import load_weights, make_policy, metric_keys, run_stage


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    return make_policy(tmp_path_factory.mktemp("policy") / "model")


def cost_config(out, policy, **over):
    cfg = {"output_dir": str(out), "seed": 5, "policy_path": str(policy),
           "data": [{"format": "synthetic", "split": "safety_preference", "size": 96}],
           "eval_split_ratio": 0.25, "batch_size": 12, "epochs": 1, "max_length_tokens": 96,
           "log_every_steps": 2, "loss": "token-wise", "optim": {"lr": 1e-3}}
    cfg.update(over)
    return cfg


def test_cost_model_trains_with_the_token_wise_loss_through_its_cli(tmp_path, policy):
    out = tmp_path / "cm"
    proc = run_stage("cost", cost_config(out, policy), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {"train/loss", "train/accuracy", "train/accuracy_sign", "eval/accuracy",
            "eval/accuracy_sign", "eval/cost_mean", "eval/cost_std"} <= metric_keys(out)
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["score_type"] == "cost"
    final = load_weights(out / "model")
    assert final["score_head.bias"].abs().item() > 0


def test_a_safer_response_labelled_unsafe_beside_a_safe_one_exits_2(tmp_path, policy):
    data = tmp_path / "safety.jsonl"
    good = {"input": "hi", "answer": "hello", "other_answer": "kill", "safer": True,
            "is_safe": True, "is_other_safe": False}
    bad = {**good, "is_safe": False, "is_other_safe": True}
    data.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    cfg = cost_config(tmp_path / "out", policy,
                      data=[{"format": "jsonl", "kind": "safety_preference", "path": str(data)}])
    proc = run_stage("cost", cfg, tmp_path)
    assert proc.returncode == 2
    assert str(data) in proc.stderr and "row 2" in proc.stderr and "Traceback" not in proc.stderr
