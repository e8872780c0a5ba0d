"""The record types are frozen, hashable, and importable without torch."""

import dataclasses
import subprocess
import sys

import pytest
from saferlhf.runners.common.records import (
    RECORD_TYPES,
    Preference,
    PromptOnly,
    SafetyPreference,
    Supervised,
    prompt_key,
)


def test_records_are_frozen():
    record = Supervised("hi", "hello", "f.jsonl", 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.response = "changed"  # type: ignore[misc]


def test_record_field_names_match_the_contract_other_stages_use():
    names = {k: [f.name for f in dataclasses.fields(t)] for k, t in RECORD_TYPES.items()}
    assert names["supervised"] == ["prompt", "response", "source", "row"]
    assert names["preference"][:5] == ["prompt", "better", "worse", "source", "row"]
    assert names["safety_preference"][:7] == [
        "prompt", "safer", "unsafer", "safer_is_safe", "unsafer_is_safe", "source", "row"]
    assert names["prompt_only"] == ["prompt", "source", "row", "category", "is_harmful", "derived"]


def test_prompt_only_defaults_mark_unknown_labels_and_own_data():
    record = PromptOnly("hi", "f", 3)
    assert (record.category, record.is_harmful, record.derived) == (None, None, False)
    assert Preference("p", "a", "b", "f", 1).derived is False
    assert SafetyPreference("p", "a", "b", True, False, "f", 1).derived is False


def test_dialogue_prompts_are_tuples_and_dedupe_keys_differ_from_joined_strings():
    assert prompt_key(("a", "b", "c")) != prompt_key("a b c")
    assert hash(Supervised(("a", "b", "c"), "d", "f", 1))  # hashable


def test_records_templates_data_and_synthetic_import_without_torch_or_the_hub_client():
    code = (
        "import sys, saferlhf.runners.common.records, saferlhf.runners.common.template, "
        "saferlhf.runners.common.data, "
        "saferlhf.runners.synthetic, saferlhf.runners.synthetic.__main__; "
        "sys.exit(1 if {'torch', 'huggingface_hub'} & set(sys.modules) else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
