"""Importing human labels: merge into the export and reject every kind of bad label."""

import json

import pytest
from saferlhf.runners.collect.labels import (
    LABEL_FIELDS,
    export_row,
    labelstudio_tasks,
    merge_labels,
    read_export,
    write_jsonl,
    write_labelled,
)
from saferlhf.runners.common.errors import InvalidInputError


@pytest.fixture
def export(tmp_path):
    rows = [export_row(f"r1-{i}", f"prompt {i}", f"answer a{i}", f"answer b{i}") for i in range(3)]
    return write_jsonl(rows, tmp_path / "export.jsonl")


def good(pair_id, **override):
    row = {"id": pair_id, "better_response_id": 0, "safer_response_id": 1,
           "is_response_0_safe": False, "is_response_1_safe": True}
    row.update(override)
    return row


def jsonl(*rows):
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def test_export_rows_have_an_id_and_empty_labels(export):
    rows = read_export(export)
    assert [r["id"] for r in rows] == ["r1-0", "r1-1", "r1-2"]
    assert all(r[name] is None for r in rows for name in LABEL_FIELDS)


def test_good_labels_merge_in_export_order_with_typed_values(export, tmp_path):
    labels = jsonl(good("r1-2"), good("r1-0", safer_response_id="0", is_response_0_safe=True),
                   good("r1-1", comment="fine"))
    merged = merge_labels(export, labels)
    assert [r["id"] for r in merged] == ["r1-0", "r1-1", "r1-2"]
    assert merged[0]["safer_response_id"] == 0 and merged[0]["is_response_0_safe"] is True
    assert merged[2]["prompt"] == "prompt 2" and merged[2]["better_response_id"] == 0
    assert "comment" not in merged[1]
    out = write_labelled(merged, tmp_path / "labelled.jsonl")
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == [
        "r1-0", "r1-1", "r1-2"]


def _error(export, labels, **kwargs) -> InvalidInputError:
    with pytest.raises(InvalidInputError) as info:
        merge_labels(export, labels, labels_name="labels.jsonl", **kwargs)
    return info.value


def test_an_unknown_id_names_the_row_and_the_id_field(export):
    err = _error(export, jsonl(good("r1-0"), good("r9-9")))
    assert (err.row, err.field) == (2, "id")
    assert "r9-9" in str(err) and "row 2" in str(err) and "labels.jsonl" in str(err)


def test_a_duplicate_id_is_rejected_at_its_second_row(export):
    err = _error(export, jsonl(good("r1-0"), good("r1-1"), good("r1-0")))
    assert (err.row, err.field) == (3, "id")
    assert "duplicate" in str(err)


@pytest.mark.parametrize("field", LABEL_FIELDS)
def test_a_missing_label_names_the_row_and_the_field(export, field):
    row = good("r1-1")
    del row[field]
    err = _error(export, jsonl(good("r1-0"), row, good("r1-2")))
    assert (err.row, err.field) == (2, field)
    assert "missing label" in str(err)


@pytest.mark.parametrize(("field", "value"), [
    ("better_response_id", 2), ("safer_response_id", True), ("is_response_0_safe", "yes"),
    ("is_response_1_safe", 1),
])
def test_a_label_of_the_wrong_type_says_what_was_expected(export, field, value):
    err = _error(export, jsonl(good("r1-0", **{field: value}), good("r1-1"), good("r1-2")))
    assert (err.row, err.field) == (1, field)
    assert "expected" in str(err)


def test_contradictory_safety_labels_are_rejected(export):
    # response 1 is "safer" but labelled unsafe while response 0 is labelled safe
    bad = good("r1-1", safer_response_id=1, is_response_0_safe=True, is_response_1_safe=False)
    err = _error(export, jsonl(good("r1-0"), bad, good("r1-2")))
    assert (err.row, err.field) == (2, "safer_response_id")
    assert "contradictory" in str(err)


def test_both_unsafe_or_both_safe_is_consistent(export):
    rows = [good("r1-0", is_response_0_safe=False, is_response_1_safe=False),
            good("r1-1", is_response_0_safe=True, is_response_1_safe=True), good("r1-2")]
    assert len(merge_labels(export, jsonl(*rows))) == 3


def test_an_unlabelled_pair_is_an_error_unless_partial_imports_are_allowed(export):
    err = _error(export, jsonl(good("r1-0"), good("r1-2")))
    assert (err.row, err.field) == (2, "id")
    assert "r1-1" in str(err) and "export.jsonl" in str(err)
    merged = merge_labels(export, jsonl(good("r1-0"), good("r1-2")), allow_partial=True)
    assert [r["id"] for r in merged] == ["r1-0", "r1-2"]


def test_a_line_that_is_not_json_names_its_row(export):
    err = _error(export, jsonl(good("r1-0")) + b"{not json\n")
    assert err.row == 2 and "not valid JSON" in str(err)


def test_a_row_without_an_id_names_the_id_field(export):
    row = good("r1-0")
    del row["id"]
    err = _error(export, jsonl(row))
    assert (err.row, err.field) == (1, "id")


def test_an_empty_labels_file_is_rejected(export):
    err = _error(export, b"\n")
    assert "no labels" in str(err)


def test_a_missing_export_file_is_an_invalid_input_error(tmp_path):
    with pytest.raises(InvalidInputError, match="export file not found"):
        merge_labels(tmp_path / "nope.jsonl", jsonl(good("r1-0")))


def _ls_task(pair_id, better="0", safer="1", safe0="unsafe", safe1="safe", cancelled=False):
    results = [
        {"from_name": "better_response_id", "type": "choices", "value": {"choices": [better]}},
        {"from_name": "safer_response_id", "type": "choices", "value": {"choices": [safer]}},
        {"from_name": "is_response_0_safe", "type": "choices", "value": {"choices": [safe0]}},
        {"from_name": "is_response_1_safe", "type": "choices", "value": {"choices": [safe1]}},
    ]
    return {"id": 100, "data": {"id": pair_id, "prompt": "p"},
            "annotations": [{"was_cancelled": cancelled, "result": results}]}


def test_a_label_studio_export_is_accepted(export):
    tasks = [_ls_task("r1-0"), _ls_task("r1-1", safer="0", safe0="safe"), _ls_task("r1-2")]
    merged = merge_labels(export, json.dumps(tasks).encode())
    assert merged[1]["safer_response_id"] == 0 and merged[1]["is_response_0_safe"] is True
    assert merged[0]["is_response_0_safe"] is False and merged[0]["is_response_1_safe"] is True


def test_a_label_studio_task_without_an_annotation_is_a_missing_label(export):
    tasks = [_ls_task("r1-0"), _ls_task("r1-1", cancelled=True), _ls_task("r1-2")]
    err = _error(export, json.dumps(tasks).encode())
    assert err.row == 2 and err.field in LABEL_FIELDS


def test_label_studio_import_tasks_carry_the_pair_id_and_texts(export):
    tasks = labelstudio_tasks(read_export(export))
    assert tasks[0] == {"data": {"id": "r1-0", "prompt": "prompt 0", "response_0": "answer a0",
                                 "response_1": "answer b0"}}


def test_the_labels_module_imports_without_torch():
    import subprocess
    import sys

    from tests.tools import ROOT

    code = "import sys, saferlhf.runners.collect.labels; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "False"
