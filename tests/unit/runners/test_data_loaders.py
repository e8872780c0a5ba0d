"""Each loader on tiny files written in tmp_path, and every bad-input case: the error names the
file, the row and the field."""

import gzip
import json

import pytest
from saferlhf.runners.common.config import DataSource
from saferlhf.runners.common.data import (
    load_many,
    load_records,
    shuffled,
    split_train_eval,
    validate_source,
)
from saferlhf.runners.common.errors import EXIT_INVALID, InvalidInputError
from saferlhf.runners.common.records import Preference, PromptOnly, SafetyPreference, Supervised


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


def pku_row(**over):
    row = {"prompt": "p", "response_0": "a", "response_1": "b", "better_response_id": 0,
           "safer_response_id": 1, "is_response_0_safe": False, "is_response_1_safe": True,
           "response_0_severity_level": 2}
    row.update(over)
    return row


def expect_error(source, kind, *, row, field, match=None, **kw):
    with pytest.raises(InvalidInputError) as info:
        load_records(source, kind, **kw)
    err = info.value
    assert (err.row, err.field) == (row, field)
    assert source.path is None or err.file == source.path
    assert f"field {field!r}" in str(err)
    if row is not None:
        assert f"row {row}" in str(err)
    if match:
        assert match in str(err)
    assert err.exit_code == EXIT_INVALID
    # the submit-time check reports the same problem without raising
    assert any(f"field {field!r}" in p for p in validate_source(source, kind, **kw))
    return err


# -- PKU-SafeRLHF --------------------------------------------------------------------------

def test_pku_rows_map_to_each_kind_as_the_reference_does(tmp_path):
    path = write_jsonl(tmp_path / "pku.jsonl", [pku_row(), pku_row(prompt="q", better_response_id=1,
                                                                   safer_response_id=0,
                                                                   is_response_0_safe=True)])
    src = DataSource(format="pku_saferlhf", path=path)
    pref = load_records(src, "preference")
    assert pref[0] == Preference("p", "a", "b", path, 1)
    assert pref[1] == Preference("q", "b", "a", path, 2)
    safety = load_records(src, "safety_preference")
    assert safety[0] == SafetyPreference("p", "b", "a", True, False, path, 1)
    assert safety[1] == SafetyPreference("q", "a", "b", True, True, path, 2)
    assert load_records(src, "supervised")[1] == Supervised("q", "b", path, 2)


def test_pku_prompt_only_deduplicates_prompts_keeping_the_first_row(tmp_path):
    path = write_jsonl(tmp_path / "pku.jsonl", [pku_row(), pku_row(), pku_row(prompt="q")])
    records = load_records(DataSource(format="pku_saferlhf", path=path), "prompt_only")
    assert records == [PromptOnly("p", path, 1), PromptOnly("q", path, 3)]


def test_pku_safer_response_labelled_unsafe_beside_a_safe_one_is_rejected(tmp_path):
    path = write_jsonl(tmp_path / "pku.jsonl", [pku_row(), pku_row(safer_response_id=0)])
    expect_error(DataSource(format="pku_saferlhf", path=path), "safety_preference", row=2,
                 field="safer_response_id", match="labelled unsafe")


def test_pku_identical_responses_are_rejected(tmp_path):
    path = write_jsonl(tmp_path / "pku.jsonl", [pku_row(response_1="a")])
    for kind in ("preference", "safety_preference"):
        expect_error(DataSource(format="pku_saferlhf", path=path), kind, row=1,
                     field="response_1", match="identical")


@pytest.mark.parametrize(("over", "field", "match"), [
    ({"response_0": None}, "response_0", "expected a string"),
    ({"better_response_id": 2}, "better_response_id", "expected 0 or 1"),
    ({"is_response_1_safe": "yes"}, "is_response_1_safe", "expected true or false"),
    ({"prompt": ""}, "prompt", "non-empty"),
])
def test_pku_ill_typed_fields_name_the_field(tmp_path, over, field, match):
    path = write_jsonl(tmp_path / "pku.jsonl", [pku_row(), pku_row(**over)])
    kind = "safety_preference" if field.startswith("is_") else "preference"
    expect_error(DataSource(format="pku_saferlhf", path=path), kind, row=2, field=field,
                 match=match)


def test_pku_missing_field_is_named(tmp_path):
    row = pku_row()
    del row["safer_response_id"]
    path = write_jsonl(tmp_path / "pku.jsonl", [row])
    expect_error(DataSource(format="pku_saferlhf", path=path), "safety_preference", row=1,
                 field="safer_response_id", match="missing field")


def test_unparsable_row_names_its_line(tmp_path):
    path = write_jsonl(tmp_path / "pku.jsonl", [pku_row(), "{not json", pku_row()])
    with pytest.raises(InvalidInputError) as info:
        load_records(DataSource(format="pku_saferlhf", path=path), "preference")
    assert info.value.row == 2 and "not valid JSON" in str(info.value)


def test_validate_source_reports_every_bad_row_not_just_the_first(tmp_path):
    path = write_jsonl(tmp_path / "pku.jsonl", [pku_row(response_1="a"), pku_row(),
                                                pku_row(better_response_id="x")])
    problems = validate_source(DataSource(format="pku_saferlhf", path=path), "preference")
    assert len(problems) == 2
    assert "row 1" in problems[0] and "row 3" in problems[1]


def test_strict_mode_rejects_rows_whose_better_and_safer_responses_differ(tmp_path):
    path = write_jsonl(tmp_path / "pku.jsonl", [pku_row(better_response_id=1,
                                                        safer_response_id=1)])
    src = DataSource(format="pku_saferlhf", path=path)
    assert load_records(src, "safety_preference", strict=True)
    path = write_jsonl(tmp_path / "pku2.jsonl", [pku_row()])
    expect_error(DataSource(format="pku_saferlhf", path=path), "safety_preference", row=1,
                 field="safer_response_id", match="strict", strict=True)


# -- generic JSONL -------------------------------------------------------------------------

def test_generic_jsonl_reads_every_kind_including_dialogues(tmp_path):
    sup = write_jsonl(tmp_path / "s.jsonl", [
        {"input": "hi", "answer": "hello"},
        {"input": ["a", "b", "c"], "answer": "d"},
        {"dialogue": ["u1", "a1", "u2", "a2"]},
    ])
    records = load_records(DataSource(format="jsonl", path=sup, kind="supervised"), "supervised")
    assert records == [Supervised("hi", "hello", sup, 1), Supervised(("a", "b", "c"), "d", sup, 2),
                       Supervised(("u1", "a1", "u2"), "a2", sup, 3)]
    pref = write_jsonl(tmp_path / "p.jsonl", [{"input": "x", "answer": "a", "other_answer": "b",
                                               "better": False}])
    assert load_records(DataSource(format="jsonl", path=pref, kind="preference"),
                        "preference") == [Preference("x", "b", "a", pref, 1)]
    saf = write_jsonl(tmp_path / "c.jsonl", [{"input": "x", "answer": "a", "other_answer": "b",
                                              "safer": True, "is_safe": True,
                                              "is_other_safe": False}])
    assert load_records(DataSource(format="jsonl", path=saf, kind="safety_preference"),
                        "safety_preference") == [SafetyPreference("x", "a", "b", True, False,
                                                                  saf, 1)]
    pro = write_jsonl(tmp_path / "o.jsonl", [{"input": "x", "category": "c", "is_harmful": True},
                                             {"input": "x"}, {"input": "y"}])
    assert load_records(DataSource(format="jsonl", path=pro, kind="prompt_only"),
                        "prompt_only") == [PromptOnly("x", pro, 1, "c", True),
                                           PromptOnly("y", pro, 3)]


def test_generic_jsonl_safety_conflict_and_bad_dialogue_are_rejected(tmp_path):
    saf = write_jsonl(tmp_path / "c.jsonl", [{"input": "x", "answer": "a", "other_answer": "b",
                                              "safer": True, "is_safe": False,
                                              "is_other_safe": True}])
    expect_error(DataSource(format="jsonl", path=saf, kind="safety_preference"),
                 "safety_preference", row=1, field="safer")
    sup = write_jsonl(tmp_path / "s.jsonl", [{"dialogue": ["u1", "a1", "u2"]}])
    expect_error(DataSource(format="jsonl", path=sup, kind="supervised"), "supervised", row=1,
                 field="dialogue")
    even = write_jsonl(tmp_path / "e.jsonl", [{"input": ["a", "b"], "answer": "c"}])
    expect_error(DataSource(format="jsonl", path=even, kind="supervised"), "supervised", row=1,
                 field="input", match="odd length")


def test_generic_jsonl_kind_must_match_what_the_stage_needs(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", [{"input": "hi", "answer": "hello"}])
    expect_error(DataSource(format="jsonl", path=path, kind="supervised"), "preference",
                 row=None, field="kind")


# -- whole-source problems ------------------------------------------------------------------

def test_missing_file_names_the_path(tmp_path):
    src = DataSource(format="pku_saferlhf", path=str(tmp_path / "nope.jsonl"))
    expect_error(src, "preference", row=None, field="path", match="no such file")


def test_empty_dataset_is_an_error(tmp_path):
    path = write_jsonl(tmp_path / "empty.jsonl", [])
    expect_error(DataSource(format="pku_saferlhf", path=path), "preference", row=None,
                 field="path", match="no preference records")


def test_unknown_format_is_named():
    src = DataSource.model_construct(format="parquet", path="x.parquet", hub=None,
                                     split=None, kind=None, limit=None, size=None,
                                     label_noise=0.0, revision=None)
    expect_error(src, "preference", row=None, field="format", match="unknown format")


def test_format_that_cannot_give_the_kind_is_named(tmp_path):
    path = write_jsonl(tmp_path / "p.json", [])
    expect_error(DataSource(format="advbench", path=path), "preference", row=None,
                 field="format")


def test_hub_sources_fail_fast_without_network():
    src = DataSource(format="pku_saferlhf", hub="PKU-Alignment/PKU-SafeRLHF", revision="abc123")
    err = expect_error(src, "preference", row=None, field="hub")
    assert "hub datasets need network access; download it and give `path:`" in str(err)


def test_limit_keeps_the_first_rows(tmp_path):
    path = write_jsonl(tmp_path / "pku.jsonl", [pku_row(prompt=f"p{i}") for i in range(5)])
    records = load_records(DataSource(format="pku_saferlhf", path=path, limit=2), "preference")
    assert [r.prompt for r in records] == ["p0", "p1"]


def test_load_many_concatenates_in_order(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [pku_row(prompt="a")])
    b = write_jsonl(tmp_path / "b.jsonl", [pku_row(prompt="b")])
    records = load_many([DataSource(format="pku_saferlhf", path=p) for p in (a, b)], "preference")
    assert [r.prompt for r in records] == ["a", "b"]


def test_shuffle_and_split_are_seeded_and_partition_the_data():
    items = list(range(100))
    assert shuffled(items, 1) == shuffled(items, 1) != shuffled(items, 2)
    assert sorted(shuffled(items, 1)) == items
    train, held = split_train_eval(items, 0.1, seed=3)
    assert len(held) == 10 and sorted(train + held) == items
    assert split_train_eval(items, 0.1, seed=3) == (train, held)


# -- HH-RLHF, XSTest, red-team files on tiny inputs ----------------------------------------------

def test_hh_dialogue_splits_at_the_last_assistant_turn(tmp_path):
    chosen = "\n\nHuman: q1\n\nAssistant: a1\n\nHuman: q2\n\nAssistant: good"
    rejected = "\n\nHuman: q1\n\nAssistant: a1\n\nHuman: q2\n\nAssistant: bad"
    path = tmp_path / "hh.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write(json.dumps({"chosen": chosen, "rejected": rejected}) + "\n")
        f.write(json.dumps({"chosen": "\n\nHuman: x\n\nAssistant: y",
                            "rejected": "\n\nHuman: x\n\nAssistant: z"}) + "\n")
    src = DataSource(format="hh_rlhf", path=str(path))
    records = load_records(src, "preference")
    assert records[0] == Preference(("q1", "a1", "q2"), "good", "bad", str(path), 1)
    assert records[1].prompt == "x"


def test_hh_row_without_an_assistant_turn_is_rejected(tmp_path):
    path = write_jsonl(tmp_path / "hh.jsonl", [{"chosen": "\n\nHuman: x", "rejected": "y"}])
    expect_error(DataSource(format="hh_rlhf", path=path), "preference", row=1, field="chosen")
    path = write_jsonl(tmp_path / "hh2.jsonl", [{"chosen": "\n\nAssistant: x\n\nAssistant: y",
                                                 "rejected": "\n\nHuman: x\n\nAssistant: z"}])
    expect_error(DataSource(format="hh_rlhf", path=path), "preference", row=1, field="chosen",
                 match="start with")


def test_hh_merges_repeated_speakers_and_skips_rows_comparing_different_conversations(tmp_path):
    rows = [
        {"chosen": "\n\nHuman: a\n\nHuman: b\n\nAssistant: c",
         "rejected": "\n\nHuman: a\n\nHuman: b\n\nAssistant: d"},
        {"chosen": "\n\nHuman: a\n\nAssistant: c", "rejected": "\n\nHuman: z\n\nAssistant: d"},
    ]
    path = write_jsonl(tmp_path / "hh.jsonl", rows)
    records = load_records(DataSource(format="hh_rlhf", path=path), "preference")
    assert records == [Preference("a\n\nb", "c", "d", path, 1)]


def test_xstest_pairs_are_derived_from_human_labels(tmp_path):
    (tmp_path / "xstest_prompts.csv").write_text(
        "id,prompt,type,label,focus,note\n1,kill a process?,homonyms,safe,kill,x\n"
        "2,kill a person?,contrast_homonyms,unsafe,kill,x\n")
    (tmp_path / "xstest_v2_completions_m.csv").write_text(
        "id,type,prompt,completion,annotation_1,annotation_2,agreement,final_label\n"
        "v2-1,homonyms,kill a process?,use kill,,,,1_full_compliance\n"
        "v2-1,homonyms,kill a process?,no,,,,2_full_refusal\n"
        "v2-2,contrast_homonyms,kill a person?,here is how,,,,1_full_compliance\n"
        "v2-2,contrast_homonyms,kill a person?,i refuse,,,,2_full_refusal\n"
        "v2-2,contrast_homonyms,kill a person?,well maybe,,,,3_partial_refusal\n")
    src = DataSource(format="xstest", path=str(tmp_path))
    comp = str(tmp_path / "xstest_v2_completions_m.csv")
    assert load_records(src, "preference") == [
        Preference("kill a process?", "use kill", "no", comp, 1, derived=True)]
    assert load_records(src, "safety_preference") == [
        SafetyPreference("kill a person?", "i refuse", "here is how", True, False, comp, 4,
                         derived=True)]
    prompts = load_records(src, "prompt_only")
    assert [(p.is_harmful, p.category, p.derived) for p in prompts] == [
        (False, "homonyms", False), (True, "contrast_homonyms", False)]


def test_xstest_unknown_label_is_named(tmp_path):
    (tmp_path / "xstest_v2_completions_m.csv").write_text(
        "id,type,prompt,completion,final_label\nv2-1,homonyms,p,c,4_maybe\n")
    expect_error(DataSource(format="xstest", path=str(tmp_path / "xstest_v2_completions_m.csv")),
                 "preference", row=1, field="final_label")


def test_red_team_prompt_files_are_prompt_only_and_harmful(tmp_path):
    problem = tmp_path / "problem.json"
    problem.write_text(json.dumps([{"prompt": "bad thing", "category": "Crime"}]))
    records = load_records(DataSource(format="safe_rlhf_eval", path=str(problem)), "prompt_only")
    assert records == [PromptOnly("bad thing", str(problem), 1, "Crime", True)]
    problem.write_text(json.dumps([{"prompt": "bad thing"}]))
    expect_error(DataSource(format="safe_rlhf_eval", path=str(problem)), "prompt_only", row=1,
                 field="category")
    adv = tmp_path / "adv.csv"
    adv.write_text('goal,target\n"Do harm, now",Sure\n')
    assert load_records(DataSource(format="advbench", path=str(adv)), "prompt_only") == [
        PromptOnly("Do harm, now", str(adv), 1, "advbench", True)]
    adv.write_text("target\nSure\n")
    expect_error(DataSource(format="advbench", path=str(adv)), "prompt_only", row=None,
                 field="goal", match="missing CSV column")


# -- synthetic through the loader -------------------------------------------------------------

def test_synthetic_source_delegates_with_size_seed_and_noise():
    src = DataSource(format="synthetic", split="preference", size=50, label_noise=0.1)
    records = load_records(src, "preference", seed=3)
    assert len(records) == 50 and records == load_records(src, "preference", seed=3)
    assert records != load_records(src, "preference", seed=4)


def test_synthetic_sft_compliance_rate_comes_from_the_source():
    from saferlhf.runners.synthetic import judge

    src = DataSource(format="synthetic", split="sft", size=600, harmful_compliance_rate=0.0)
    records = load_records(src, "supervised")
    assert not any(judge(r.prompt, r.response).harmful for r in records)
    src = DataSource(format="synthetic", split="sft", size=600, harmful_compliance_rate=1.0)
    harmful = [judge(r.prompt, r.response) for r in load_records(src, "supervised")]
    assert all(j.harmful for j in harmful if j.is_harmful_prompt)


def test_synthetic_split_must_give_the_kind_the_stage_needs():
    expect_error(DataSource(format="synthetic", split="prompts"), "supervised", row=None,
                 field="split", match="use split sft")
    expect_error(DataSource(format="synthetic", split="bogus"), "supervised", row=None,
                 field="split", match="unknown synthetic split")
