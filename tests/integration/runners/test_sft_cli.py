"""`python -m saferlhf.runners.sft` end to end on CPU: outputs, metrics, learning, resume, bad
rows."""

from __future__ import annotations

import json

import pytest
import torch

from tests.integration.runners._stages import TINY, events_of, load_weights, metric_keys, run_stage


def sft_config(out, **over):
    cfg = {"output_dir": str(out), "seed": 3, "model": TINY,
           "data": [{"format": "synthetic", "split": "sft", "size": 160}],
           "eval_split_ratio": 0.2, "batch_size": 16, "epochs": 2, "max_length_tokens": 96,
           "log_every_steps": 2, "checkpoint_every_steps": 4,
           "optim": {"lr": 2e-3, "warmup_ratio": 0.1}}
    cfg.update(over)
    return cfg


def _initial_weights(cfg):
    """The stage's own start: same seed, same records, same tokenizer training."""
    from saferlhf.runners.common.checkpoint import seed_everything
    from saferlhf.runners.common.config import SFTConfig
    from saferlhf.runners.common.models import build_policy
    from saferlhf.runners.common.stage_data import train_eval_records
    from saferlhf.runners.sft.train import tokenizer_texts

    config = SFTConfig.model_validate({"kind": "sft", **cfg})
    train, _ = train_eval_records(config, "supervised")
    seed_everything(config.seed)
    model, tok = build_policy(config.model, tokenizer_texts(config, train))
    return model.state_dict(), tok


def test_sft_trains_a_builtin_model_through_its_cli_and_writes_every_output(tmp_path):
    out = tmp_path / "sft"
    cfg = sft_config(out)
    proc = run_stage("sft", cfg, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("events.jsonl", "result.json", "stage.log", "model/config.json",
                 "model/model.safetensors", "model/tokenizer.json", "checkpoints/latest"):
        assert (out / name).exists(), name
    assert {"train/loss", "train/lr", "train/epoch", "eval/loss"} <= metric_keys(out)
    progress = events_of(out, "progress")
    assert progress[-1]["step"] == progress[-1]["total_steps"] == 16  # 128 rows / 16 × 2 epochs
    result = json.loads((out / "result.json").read_text())
    assert result["train/step"] == 16
    losses = [e["values"]["train/loss"] for e in events_of(out, "metrics")
              if "train/loss" in e["values"]]
    assert losses[-1] < losses[0] - 0.5  # it learns
    initial, tok = _initial_weights(cfg)
    final = load_weights(out / "model")
    changed = [k for k, v in initial.items() if k in final and not torch.equal(v, final[k])]
    assert len(changed) >= len(final) // 2
    from transformers import AutoTokenizer

    saved_tok = AutoTokenizer.from_pretrained(out / "model")
    assert saved_tok.get_vocab() == tok.get_vocab()  # the tokenizer is saved with the model


@pytest.mark.slow
def test_sft_resumed_after_sigterm_ends_with_the_same_weights_as_a_straight_run(tmp_path):
    straight = run_stage("sft", sft_config(tmp_path / "a"), tmp_path)
    assert straight.returncode == 0, straight.stderr[-3000:]
    cfg = sft_config(tmp_path / "b")
    stopped = run_stage("sft", cfg, tmp_path, env={"SAFERLHF_FAULT_AFTER_STEPS": "6"})
    assert stopped.returncode == 75, stopped.stderr[-3000:]
    assert (tmp_path / "b" / "checkpoints" / "step-6").is_dir()
    assert not (tmp_path / "b" / "model").exists()
    resumed = run_stage("sft", cfg, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = load_weights(tmp_path / "a" / "model"), load_weights(tmp_path / "b" / "model")
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key


def test_a_bad_supervised_row_exits_2_naming_file_row_and_field_without_a_traceback(tmp_path):
    data = tmp_path / "sft.jsonl"
    data.write_text(json.dumps({"input": "hi", "answer": "hello"}) + "\n"
                    + json.dumps({"input": "bye"}) + "\n")
    cfg = sft_config(tmp_path / "out", data=[{"format": "jsonl", "kind": "supervised",
                                               "path": str(data)}])
    proc = run_stage("sft", cfg, tmp_path)
    assert proc.returncode == 2
    assert str(data) in proc.stderr and "row 2" in proc.stderr and "answer" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_invalid_stage_config_exits_2_with_the_field_path(tmp_path):
    cfg = sft_config(tmp_path / "out", batch_size=0)
    proc = run_stage("sft", cfg, tmp_path)
    assert proc.returncode == 2
    assert "batch_size" in proc.stderr and "Traceback" not in proc.stderr
