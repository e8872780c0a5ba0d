"""The dpo / safe_dpo CLIs on a tiny policy: exit codes, outputs, and — on every backend — the
check that the precomputed reference log-probs line up with their pairs: at the first step the
policy IS the reference, so the logged DPO loss must be exactly log 2 (a reference log-prob
gathered onto the wrong pair, e.g. by the 2-process shard-and-gather, would move it)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.integration.runners._stages import events_of, make_policy, metric_keys, run_stage


@pytest.fixture(scope="module")
def policy(tmp_path_factory) -> Path:
    return make_policy(tmp_path_factory.mktemp("dpo") / "policy")


def _config(kind: str, policy: Path, out: Path, **over) -> dict:
    split = "safety_labelled_preference" if kind == "safe_dpo" else "preference"
    return {"output_dir": str(out), "policy_path": str(policy),
            "data": [{"format": "synthetic", "split": split, "size": 48}],
            "eval_split_ratio": 0.25, "batch_size": 4, "epochs": 1, "max_steps": 3,
            "max_length_tokens": 128, "beta": 0.5, "optim": {"lr": 1e-3},
            "log_every_steps": 1, **over}


def _first_loss(out: Path) -> float:
    return next(e["values"]["train/loss"] for e in events_of(out, "metrics")
                if "train/loss" in e["values"])


@pytest.mark.parametrize("kind", ["dpo", "safe_dpo"])
def test_the_stage_trains_from_log_two_and_saves_a_policy(policy, tmp_path, kind):
    out = tmp_path / kind
    extra = {"safety_margin": 0.0} if kind == "safe_dpo" else {}
    proc = run_stage(kind, _config(kind, policy, out, **extra), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _first_loss(out) == pytest.approx(math.log(2.0), abs=1e-4)
    result = json.loads((out / "result.json").read_text())
    assert result["train/step"] == 3.0 and 0.0 <= result["eval/reward_accuracy"] <= 1.0
    assert {"train/reward_margin", "eval/reward_margin", "eval/loss"} <= metric_keys(out)
    assert (out / "model" / "config.json").exists() and (out / "model" / "tokenizer.json").exists()
    if kind == "safe_dpo":
        assert result["data/pairs_swapped"] + result["data/pairs_kept"] > 0


@pytest.mark.slow
def test_two_processes_gather_the_reference_log_probs_onto_the_right_pairs(policy, tmp_path):
    out = tmp_path / "ddp"
    proc = run_stage("dpo", _config("dpo", policy, out), tmp_path, nproc=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _first_loss(out) == pytest.approx(math.log(2.0), abs=1e-4)


@pytest.mark.slow
def test_deepspeed_zero3_trains_and_gathers_the_weights_to_save(policy, tmp_path):
    out = tmp_path / "zero3"
    proc = run_stage("safe_dpo", _config(
        "safe_dpo", policy, out, safety_margin=0.0,
        backend={"kind": "deepspeed", "deepspeed": {"zero_stage": 3}}), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _first_loss(out) == pytest.approx(math.log(2.0), abs=1e-4)
    assert (out / "model" / "config.json").exists()


def test_a_bad_data_split_exits_2_naming_the_field(policy, tmp_path):
    cfg = _config("safe_dpo", policy, tmp_path / "bad")
    cfg["data"] = [{"format": "synthetic", "split": "safety_preference"}]
    proc = run_stage("safe_dpo", cfg, tmp_path)
    assert proc.returncode == 2
    assert "use split safety_labelled_preference" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_lora_starts_at_the_reference_and_saves_an_adapter_later_stages_load(policy, tmp_path):
    from saferlhf.runners.common.adapters import adapter_base, is_adapter_folder
    from saferlhf.runners.common.models import load_policy

    out = tmp_path / "lora"
    proc = run_stage("safe_dpo", _config("safe_dpo", policy, out, safety_margin=0.0,
                                         lora={"r": 4, "alpha": 8.0}), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _first_loss(out) == pytest.approx(math.log(2.0), abs=1e-4)  # B = 0: π = π_ref
    model_dir = out / "model"
    assert is_adapter_folder(model_dir)
    assert adapter_base(model_dir)[0] == str(policy.resolve())
    merged, _ = load_policy(model_dir)  # what ppo_lag / evaluate load: base + s·B·A
    base, _ = load_policy(policy)
    changed = [k for k, v in merged.state_dict().items()
               if not v.equal(base.state_dict()[k])]
    assert changed, "the adapter trained nothing"
