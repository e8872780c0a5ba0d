"""`python -m saferlhf.runners.collect` end to end on a tiny random policy (oracle and import
labelers)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from saferlhf.runners.collect.run import run
from saferlhf.runners.common.config import DataSource, parse_stage_config
from saferlhf.runners.common.data import load_records
from saferlhf.runners.common.errors import InvalidInputError
from saferlhf.runners.common.events import EventSink
from saferlhf.runners.synthetic import judge

from tests.tools import ROOT

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
       "TOKENIZERS_PARALLELISM": "false"}


def build_tiny_policy(folder: Path) -> Path:
    """A ~40 k-parameter GPT-2 with a BPE tokenizer trained on synthetic SFT texts (B's helper)."""
    from saferlhf.runners.common.config import ModelSpec
    from saferlhf.runners.common.models import build_policy, save_model
    from saferlhf.runners.common.template import format_prompt
    from saferlhf.runners.synthetic import dataset

    texts = [format_prompt(r.prompt, "") + r.response for r in dataset("sft", size=120, seed=0)]
    spec = ModelSpec(path="builtin:tiny-gpt2", n_layer=1, n_embd=32, n_head=2, vocab_size=256,
                     max_position_embeddings=96)
    model, tokenizer = build_policy(spec, texts)
    save_model(model, tokenizer, folder)
    return folder


@pytest.fixture(scope="module")
def policy(tmp_path_factory) -> Path:
    return build_tiny_policy(tmp_path_factory.mktemp("collect") / "policy")


@pytest.fixture(scope="module")
def exported(policy, tmp_path_factory) -> Path:
    """Output folder of one `labeler: import` stage run (shared by the import tests)."""
    folder = tmp_path_factory.mktemp("export")
    # like the planner: labels_path names where the imported labels will go (absent for now)
    config = collect_config(policy, folder / "out", labeler="import",
                            labels_path=str(folder / "out" / "imported_labels.jsonl"))
    proc = run_stage(config, folder)
    assert proc.returncode == 0, proc.stderr
    return folder / "out"


def run_stage(config: dict, folder: Path) -> subprocess.CompletedProcess:
    path = folder / "stage.json"
    path.write_text(json.dumps(config))
    return subprocess.run([sys.executable, "-m", "saferlhf.runners.collect", "--config", str(path)],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)


def collect_config(policy: Path, out: Path, **overrides) -> dict:
    config = {"kind": "collect", "output_dir": str(out), "seed": 7, "round": 2,
              "policy_path": str(policy),
              "prompts": [{"format": "synthetic", "split": "prompts", "size": 6}],
              "samples_per_prompt": 4, "max_new_tokens": 12, "labeler": "oracle",
              "batch_size": 12}
    config.update(overrides)
    return config


def test_oracle_collect_writes_pku_rows_whose_labels_agree_with_the_exact_judge(policy, tmp_path):
    out = tmp_path / "out"
    proc = run_stage(collect_config(policy, out), tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["awaiting_labels"] is False
    assert result["pairs"] + result["dropped_identical"] == 6 * 4 // 2
    assert 0.0 <= result["collect/harmful_rate"] <= 1.0
    rows = [json.loads(line) for line in (out / "labelled.jsonl").read_text().splitlines()]
    assert len(rows) == result["pairs"] > 0
    for row in rows:
        j0, j1 = judge(row["prompt"], row["response_0"]), judge(row["prompt"], row["response_1"])
        assert (row["is_response_0_safe"], row["is_response_1_safe"]) == (not j0.harmful,
                                                                          not j1.harmful)
        if j0.helpfulness != j1.helpfulness:
            assert row["better_response_id"] == int(j1.helpfulness > j0.helpfulness)
    source = DataSource(format="pku_saferlhf", path=str(out / "labelled.jsonl"))
    assert len(load_records(source, "preference")) == len(rows)
    assert len(load_records(source, "safety_preference")) == len(rows)
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert any(e["type"] == "metrics" and "collect/pairs" in e["values"] for e in events)


def test_import_collect_exports_pairs_then_merges_imported_labels(policy, exported, tmp_path):
    out = exported
    result = json.loads((out / "result.json").read_text())
    assert result["awaiting_labels"] is True
    export = [json.loads(line) for line in (out / "export.jsonl").read_text().splitlines()]
    assert len(export) == result["pairs"] > 0
    assert all(r["better_response_id"] is None and r["id"].startswith("r2-") for r in export)
    tasks = json.loads((out / "labelstudio.json").read_text())
    assert [t["data"]["id"] for t in tasks] == [r["id"] for r in export]
    assert "<Choices name=\"safer_response_id\"" in (out / "labelstudio_config.xml").read_text()

    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps({
        "id": r["id"], "better_response_id": 1, "safer_response_id": 0,
        "is_response_0_safe": True, "is_response_1_safe": i % 2 == 0}) + "\n"
        for i, r in enumerate(export)))
    assert not (out / "labelled.jsonl").exists()
    merged = tmp_path / "merged.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "saferlhf.runners.collect", "import",
         "--export", str(out / "export.jsonl"),
         "--labels", str(labels), "--out", str(merged)],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = load_records(DataSource(format="pku_saferlhf", path=str(merged)), "safety_preference")
    assert len(rows) == len(export)

    # the stage itself, run again once the labels file exists, merges without sampling
    # (in-process: the stage CLI's exit-code mapping is exercised by the other tests)
    (out / "imported_labels.jsonl").write_bytes(labels.read_bytes())
    config = parse_stage_config(collect_config(
        policy, out, labeler="import", labels_path=str(out / "imported_labels.jsonl")))
    result = run(config, EventSink(out))
    assert result["awaiting_labels"] is False and result["pairs"] == len(export)
    assert len((out / "labelled.jsonl").read_text().splitlines()) == len(export)


def test_importing_bad_labels_exits_2_with_one_line_naming_the_row_and_field(exported, tmp_path):
    out = exported
    export = [json.loads(line) for line in (out / "export.jsonl").read_text().splitlines()]
    labels = tmp_path / "labels.jsonl"
    good = {"better_response_id": 0, "safer_response_id": 0, "is_response_0_safe": True,
            "is_response_1_safe": False}
    labels.write_text(json.dumps({"id": export[0]["id"], **good}) + "\n"
                      + json.dumps({"id": "r2-999999", **good}) + "\n")
    proc = subprocess.run(
        [sys.executable, "-m", "saferlhf.runners.collect", "import",
         "--export", str(out / "export.jsonl"),
         "--labels", str(labels), "--out", str(tmp_path / "merged.jsonl")],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "row 2" in lines[0] and "field 'id'" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "merged.jsonl").exists()


def test_an_oracle_labeler_on_non_synthetic_prompts_is_an_invalid_input(policy, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"input": "how do i bake bread?"}) + "\n")
    config = parse_stage_config(collect_config(
        policy, tmp_path / "out",
        prompts=[{"format": "jsonl", "kind": "prompt_only", "path": str(prompts)}]))
    with pytest.raises(InvalidInputError, match="labeler") as info:
        run(config, EventSink(tmp_path / "out"))
    assert info.value.exit_code == 2 and info.value.field == "labeler"
