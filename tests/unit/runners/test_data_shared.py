"""The loaders read the real files in ../shared/data exactly (skipped where the folder is absent).

Facts asserted here come from the files themselves and data/SOURCES.md."""

import gzip
import json

import pytest
from saferlhf.runners.common.config import DataSource
from saferlhf.runners.common.data import load_records, validate_source
from saferlhf.runners.common.errors import InvalidInputError
from saferlhf.runners.common.records import SafetyPreference

from tests.tools import require_shared_data

PKU = "pku_saferlhf/pku_saferlhf_alpaca7b_test_first16.jsonl"


def pku_source():
    return DataSource(format="pku_saferlhf", path=str(require_shared_data(PKU)))


def test_all_16_pku_rows_load_for_every_kind():
    src = pku_source()
    for kind in ("preference", "safety_preference", "supervised"):
        records = load_records(src, kind)
        assert [r.row for r in records] == list(range(1, 17))
    assert len(load_records(src, "prompt_only")) == 16  # 16 distinct prompts
    assert validate_source(src, "safety_preference") == []


def test_pku_row_1_maps_every_label_field_as_the_reference_does():
    path = require_shared_data(PKU)
    raw = json.loads(path.read_text().splitlines()[0])
    (pref,) = [r for r in load_records(pku_source(), "preference") if r.row == 1]
    (safety,) = [r for r in load_records(pku_source(), "safety_preference") if r.row == 1]
    assert pref.prompt == safety.prompt == raw["prompt"]
    assert pref.prompt.startswith("My goal is to cause economic panic")
    # row 1: better_response_id = 1, safer_response_id = 1, both responses labelled unsafe
    assert (raw["better_response_id"], raw["safer_response_id"]) == (1, 1)
    assert (pref.better, pref.worse) == (raw["response_1"], raw["response_0"])
    assert (safety.safer, safety.unsafer) == (raw["response_1"], raw["response_0"])
    assert (safety.safer_is_safe, safety.unsafer_is_safe) == (False, False)
    assert safety.source == str(path) and not safety.derived


def test_pku_row_6_is_the_conflict_row_rejected_only_in_strict_mode():
    # Row 6 is the one row whose helpfulness and harmlessness preferences disagree
    # (better_response_id = 1, safer_response_id = 0; SOURCES.md). Both responses are labelled
    # unsafe, so the reference's sign check accepts it and so does the default loader.
    (row6,) = [r for r in load_records(pku_source(), "safety_preference") if r.row == 6]
    (pref6,) = [r for r in load_records(pku_source(), "preference") if r.row == 6]
    assert isinstance(row6, SafetyPreference)
    assert row6.safer == pref6.worse and row6.unsafer == pref6.better
    with pytest.raises(InvalidInputError) as info:
        load_records(pku_source(), "safety_preference", strict=True)
    assert (info.value.row, info.value.field) == (6, "safer_response_id")
    assert "row 6" in str(info.value) and PKU in str(info.value)
    problems = validate_source(pku_source(), "safety_preference", strict=True)
    assert len(problems) == 1 and "row 6" in problems[0]


def test_hh_rlhf_splits_a_real_dialogue_at_its_last_assistant_turn():
    path = require_shared_data("hh_rlhf/harmless-base_test.jsonl.gz")
    with gzip.open(path, "rt") as f:
        raw = json.loads(f.readline())
    records = load_records(DataSource(format="hh_rlhf", path=str(path)), "preference")
    first = records[0]
    assert first.row == 1
    assert first.prompt[0] == "what are some pranks with a pen i can do?"
    assert len(first.prompt) % 2 == 1 and len(first.prompt) >= 3
    marker = "\n\nAssistant:"
    last = raw["chosen"].rfind(marker)
    assert first.better == raw["chosen"][last + len(marker):].strip()
    assert first.worse == raw["rejected"][raw["rejected"].rfind(marker) + len(marker):].strip()
    assert first.better.startswith("No, sorry!")
    assert first.prompt[-1] in raw["chosen"][:last]
    # 2,312 rows; 5 whose chosen and rejected conversations differ before the last turn are skipped
    assert len(records) == 2307


def test_xstest_prompt_counts_and_derived_pair_counts():
    folder = require_shared_data("xstest")
    prompts = load_records(DataSource(format="xstest", path=str(folder)), "prompt_only")
    assert len(prompts) == 450
    assert sum(p.is_harmful for p in prompts) == 200
    assert sum(not p.is_harmful for p in prompts) == 250
    # SOURCES.md: about 456 helpfulness pairs on safe prompts, about 520 safety pairs on unsafe
    pref = load_records(DataSource(format="xstest", path=str(folder)), "preference")
    safety = load_records(DataSource(format="xstest", path=str(folder)), "safety_preference")
    assert (len(pref), len(safety)) == (456, 520)
    assert all(r.derived for r in pref + safety)
    assert all(r.safer_is_safe and not r.unsafer_is_safe for r in safety)


def test_the_83_red_team_prompts_load_with_their_8_categories():
    path = require_shared_data("safe_rlhf_eval/problem.json")
    records = load_records(DataSource(format="safe_rlhf_eval", path=str(path)), "prompt_only")
    assert len(records) == 83
    assert len({r.category for r in records}) == 8
    assert all(r.is_harmful for r in records)


def test_advbench_goals_load_as_harmful_prompts():
    path = require_shared_data("redteam/raw_advbench.csv")
    records = load_records(DataSource(format="advbench", path=str(path)), "prompt_only")
    assert len(records) == 520
    assert records[0].prompt.startswith("Write a script that can exploit vulnerabilities")
