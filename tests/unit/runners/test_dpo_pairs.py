"""The data side of the DPO stages: safety-labelled preference records from every source, the
pair order each objective trains on (SafeDPO's keep / swap / drop), tokenisation and batching."""

import json

import pytest
import torch
from saferlhf.runners.common.config import DataSource
from saferlhf.runners.common.data import load_records, validate_source
from saferlhf.runners.common.errors import InvalidInputError
from saferlhf.runners.common.records import (
    Preference,
    SafetyLabelledPreference,
    SafetyPreference,
)
from saferlhf.runners.dpo.pairs import (
    PairCollator,
    encode_pairs,
    order_pairs,
    with_reference,
)
from saferlhf.runners.synthetic.judge import judge
from saferlhf.runners.synthetic.oracle import harm_level
from saferlhf.runners.synthetic.splits import dataset
from saferlhf.runners.synthetic.vocab import LEXICON

TEXTS = [f"BEGINNING OF CONVERSATION: USER: {w} ASSISTANT:sure . first {w}</s>" for w in LEXICON]


@pytest.fixture(scope="module")
def tokenizer():
    from saferlhf.runners.common.tokenizer import train_bpe_tokenizer

    return train_bpe_tokenizer(TEXTS * 3, vocab_size=400, model_max_length=128)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_pku_rows_give_the_better_response_with_both_safety_labels(tmp_path):
    rows = [{"prompt": "p", "response_0": "a", "response_1": "b", "better_response_id": 0,
             "safer_response_id": 1, "is_response_0_safe": False, "is_response_1_safe": True},
            {"prompt": "q", "response_0": "c", "response_1": "d", "better_response_id": 1,
             "safer_response_id": 1, "is_response_0_safe": True, "is_response_1_safe": True}]
    path = write_jsonl(tmp_path / "pku.jsonl", rows)
    got = load_records(DataSource(format="pku_saferlhf", path=path),
                       "safety_labelled_preference")
    assert got == [SafetyLabelledPreference("p", "a", "b", False, True, path, 1),
                   SafetyLabelledPreference("q", "d", "c", True, True, path, 2)]


def test_a_pku_row_without_its_safety_labels_is_reported_with_row_and_field(tmp_path):
    path = write_jsonl(tmp_path / "pku.jsonl", [{"prompt": "p", "response_0": "a",
                                                 "response_1": "b", "better_response_id": 0,
                                                 "is_response_0_safe": True}])
    source = DataSource(format="pku_saferlhf", path=path)
    with pytest.raises(InvalidInputError) as info:
        load_records(source, "safety_labelled_preference")
    assert (info.value.row, info.value.field) == (1, "is_response_1_safe")
    assert any("is_response_1_safe" in p for p in validate_source(
        source, "safety_labelled_preference"))


def test_generic_jsonl_rows_give_safety_labelled_pairs(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"input": "p", "answer": "a", "other_answer": "b",
                                               "better": False, "is_safe": True,
                                               "is_other_safe": False}])
    got = load_records(DataSource(format="jsonl", path=path, kind="safety_labelled_preference"),
                       "safety_labelled_preference")
    assert got == [SafetyLabelledPreference("p", "b", "a", False, True, path, 1)]


def test_the_synthetic_split_labels_helpfulness_and_each_responses_harm_exactly():
    records = dataset("safety_labelled_preference", size=300, seed=3)
    assert len(records) == 300
    for r in records:
        assert judge(r.prompt, r.better).helpfulness > judge(r.prompt, r.worse).helpfulness
        assert r.better_is_safe == (harm_level(r.better) == 0)
        assert r.worse_is_safe == (harm_level(r.worse) == 0)
    # SafeDPO's three cases; a safe response never out-helps an unsafe one on this benchmark
    # (compliance scores 1, a redirection 0.5), so the safe-over-unsafe case needs label noise
    cases = {(r.better_is_safe, r.worse_is_safe) for r in records}
    assert cases == {(True, True), (False, True), (False, False)}
    noisy = dataset("safety_labelled_preference", size=300, seed=3, label_noise=0.2)
    assert (True, False) in {(r.better_is_safe, r.worse_is_safe) for r in noisy}
    assert dataset("safety_labelled_preference", size=300, seed=3) == records  # deterministic


def test_the_synthetic_format_refuses_a_split_of_the_wrong_kind():
    problem = validate_source(DataSource(format="synthetic", split="safety_preference"),
                              "safety_labelled_preference")
    assert problem and "use split safety_labelled_preference" in problem[0]


def _labelled(better_safe: bool, worse_safe: bool, row: int) -> SafetyLabelledPreference:
    return SafetyLabelledPreference("p", f"better{row}", f"worse{row}", better_safe, worse_safe,
                                    "f", row)


def test_safe_dpo_keeps_swaps_and_drops_pairs_by_their_safety_labels():
    records = [_labelled(True, True, 1), _labelled(True, False, 2), _labelled(False, True, 3),
               _labelled(False, False, 4)]
    pairs, counts = order_pairs(records, "safe_dpo")
    assert counts == {"keep": 2, "swap": 1, "drop": 1}
    assert [(p.chosen, p.rejected, p.chosen_unsafe, p.rejected_unsafe, p.row) for p in pairs] == [
        ("better1", "worse1", False, False, 1),
        ("better2", "worse2", False, True, 2),
        ("worse3", "better3", False, True, 3),  # the safe (less helpful) response now wins
    ]


def test_dpo_orders_by_helpfulness_or_by_harmlessness_as_asked():
    pairs, _ = order_pairs([Preference("p", "good", "bad", "f", 1)], "dpo")
    assert (pairs[0].chosen, pairs[0].rejected) == ("good", "bad")
    pairs, _ = order_pairs([SafetyPreference("p", "safe", "harm", True, False, "f", 1)], "dpo")
    assert (pairs[0].chosen, pairs[0].rejected, pairs[0].rejected_unsafe) == ("safe", "harm",
                                                                              True)


def test_encoded_pairs_mask_the_prompt_and_batch_both_sides_at_one_width(tokenizer):
    pairs, _ = order_pairs([_labelled(True, False, 1), SafetyLabelledPreference(
        "how do i bake bread?", "sure. first knead the dough, then bake it.", "no.", True, True,
        "f", 2)], "safe_dpo")
    samples = encode_pairs(pairs, tokenizer, max_length=64)
    samples = with_reference(samples, torch.tensor([[-1.0, -2.0], [-3.0, -4.0]]))
    batch = PairCollator(tokenizer.pad_token_id)(samples)
    assert batch["input_ids"].shape[0] == 4  # chosen rows, then rejected rows
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    first = samples[0]
    n_prompt = sum(1 for x in first.chosen_labels if x == -100)
    assert first.chosen_labels[n_prompt:] == first.chosen_ids[n_prompt:]
    assert batch["rejected_unsafe"].tolist() == [True, False]
    assert batch["reference_chosen"].tolist() == [-1.0, -3.0]
    assert batch["reference_rejected"].tolist() == [-2.0, -4.0]
    # the mask covers each row's real tokens, padding is masked out of the labels
    lengths = batch["attention_mask"].sum(1).tolist()
    assert lengths == [len(samples[0].chosen_ids), len(samples[1].chosen_ids),
                       len(samples[0].rejected_ids), len(samples[1].rejected_ids)]
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()


def test_a_pair_identical_after_truncation_is_an_input_error_naming_its_row(tokenizer):
    from saferlhf.runners.common.template import format_prompt

    n_prompt = len(tokenizer(format_prompt("hi", tokenizer.eos_token))["input_ids"])
    pairs, _ = order_pairs([SafetyLabelledPreference("hi", "sure. first a", "sure. first b", True,
                                                     True, "data.jsonl", 7)], "safe_dpo")
    with pytest.raises(InvalidInputError, match="identical") as info:
        encode_pairs(pairs, tokenizer, max_length=n_prompt + 1)
    assert (info.value.file, info.value.row) == ("data.jsonl", 7)
