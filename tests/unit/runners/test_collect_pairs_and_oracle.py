"""Collect stage pieces: pairing samples, context budgets and oracle labels (exact judge)."""

import random

from saferlhf.runners.collect.run import oracle_rows
from saferlhf.runners.collect.sample import Pair, context_budget, pair_samples
from saferlhf.runners.common.records import PromptOnly
from saferlhf.runners.synthetic import judge
from saferlhf.runners.synthetic import responses as R
from saferlhf.runners.synthetic.vocab import TASKS

HARMFUL = next(t for t in TASKS if t.is_harmful)
BENIGN = next(t for t in TASKS if not t.is_harmful)


def test_samples_form_disjoint_pairs_and_identical_or_empty_pairs_are_dropped():
    pairs, dropped = pair_samples(["p0", "p1", "p2"],
                                  [["a", "b", "c", "d", "e"], ["x", "x"], ["", "y", " ", "z"]])
    assert [(p.prompt_index, p.response_0, p.response_1) for p in pairs] == [
        (0, "a", "b"), (0, "c", "d")]
    assert dropped == {"identical": 1, "empty": 2}


def test_the_generation_budget_fits_the_model_context():
    assert context_budget(128, 32) == (32, 96)
    assert context_budget(128, 200) == (64, 64)
    assert context_budget(None, 50) == (50, None)


def test_oracle_labels_agree_with_the_exact_judge_without_noise():
    rng = random.Random(0)
    harmful_prompt = f"how do i {HARMFUL.phrase}?"
    benign_prompt = f"how do i {BENIGN.phrase}?"
    pairs = [
        Pair(0, harmful_prompt, R.helpful(HARMFUL, rng), R.refusal(rng)),
        Pair(0, harmful_prompt, R.redirection(HARMFUL.category, rng), R.helpful(HARMFUL, rng)),
        Pair(1, benign_prompt, R.dropped_step(BENIGN, rng), R.helpful(BENIGN, rng)),
        Pair(1, benign_prompt, R.helpful(BENIGN, rng), R.refusal(rng)),
    ]
    records = [PromptOnly(harmful_prompt, "synthetic:prompts", 1, HARMFUL.category, True),
               PromptOnly(benign_prompt, "synthetic:prompts", 2, "benign", False)]
    rows = oracle_rows(pairs, records, round_=3, noise=0.0, seed=1)
    assert [r["id"] for r in rows] == ["r3-000000", "r3-000001", "r3-000002", "r3-000003"]
    for row in rows:
        j0, j1 = judge(row["prompt"], row["response_0"]), judge(row["prompt"], row["response_1"])
        assert row["is_response_0_safe"] is (not j0.harmful)
        assert row["is_response_1_safe"] is (not j1.harmful)
        if j0.helpfulness != j1.helpfulness:
            assert row["better_response_id"] == (0 if j0.helpfulness > j1.helpfulness else 1)
        if j0.harmful != j1.harmful:
            assert row["safer_response_id"] == (1 if j0.harmful else 0)
    # the hand-made pairs cover both directions of both labels
    assert [r["safer_response_id"] for r in rows[:2]] == [1, 0]
    assert [r["better_response_id"] for r in rows[2:]] == [1, 0]
    assert rows[0]["source"] == "synthetic:prompts" and rows[0]["source_row"] == 1


def test_oracle_label_noise_flips_some_labels_but_never_contradicts_safety():
    rng = random.Random(0)
    prompt = f"how do i {HARMFUL.phrase}?"
    pairs = [Pair(0, prompt, R.helpful(HARMFUL, rng), R.refusal(rng)) for _ in range(200)]
    records = [PromptOnly(prompt, "s", 1, HARMFUL.category, True)]
    rows = oracle_rows(pairs, records, round_=2, noise=0.3, seed=5)
    flipped = sum(r["safer_response_id"] == 0 for r in rows) / len(rows)
    assert 0.15 < flipped < 0.45
    for r in rows:
        safer = r["safer_response_id"]
        assert not (not r[f"is_response_{safer}_safe"] and r[f"is_response_{1 - safer}_safe"])
