"""Human-in-the-loop labels for a round: export unlabelled pairs, validate and merge the import.

Torch-free on purpose — the service imports it to validate an `ImportLabels` call before it resumes
a round that waits in AWAITING_LABELS (DESIGN §4). The labels are the paper's decoupled ones
(reference §1.1, §9): a helpfulness preference, a harmlessness preference, and a per-response
safe/unsafe meta-label, in PKU-SafeRLHF field names.

Formats:
- export (`export.jsonl`): one PKU-SafeRLHF row per pair with an `id` and the four label fields
  set to null.
- labels, JSONL: one object a line, `{id, better_response_id, safer_response_id,
  is_response_0_safe, is_response_1_safe}` (ids 0/1, the two flags JSON booleans); other keys, such
  as a comment, are ignored. Or a Label Studio JSON export of tasks made from `labelstudio.json`
  with `LABEL_STUDIO_CONFIG` (one choice per label field, named like the field).
- merged/labelled (`labelled.jsonl`): the export rows with the labels filled in, loadable by the
  pku_saferlhf loader for both the reward and the cost model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from saferlhf.runners.common.errors import InvalidInputError

LABEL_FIELDS = (
    "better_response_id", "safer_response_id", "is_response_0_safe", "is_response_1_safe",
)
TEXT_FIELDS = ("prompt", "response_0", "response_1")

# The Label Studio labelling interface that matches `labelstudio_tasks` and `_from_label_studio`:
# every choice block is named after the PKU field it fills, and its choice values parse directly.
LABEL_STUDIO_CONFIG = """<View>
  <Header value="Prompt"/>
  <Text name="prompt" value="$prompt"/>
  <Header value="Response 0"/>
  <Text name="response_0" value="$response_0"/>
  <Header value="Response 1"/>
  <Text name="response_1" value="$response_1"/>
  <Header value="Which response is more helpful?"/>
  <Choices name="better_response_id" toName="prompt" choice="single" required="true">
    <Choice value="0"/><Choice value="1"/>
  </Choices>
  <Header value="Which response is safer (less harmful)?"/>
  <Choices name="safer_response_id" toName="prompt" choice="single" required="true">
    <Choice value="0"/><Choice value="1"/>
  </Choices>
  <Header value="Is response 0 safe?"/>
  <Choices name="is_response_0_safe" toName="response_0" choice="single" required="true">
    <Choice value="safe"/><Choice value="unsafe"/>
  </Choices>
  <Header value="Is response 1 safe?"/>
  <Choices name="is_response_1_safe" toName="response_1" choice="single" required="true">
    <Choice value="safe"/><Choice value="unsafe"/>
  </Choices>
</View>
"""


# ------------------------------------------------------------------------------------------
# Export
# ------------------------------------------------------------------------------------------


def export_row(pair_id: str, prompt: str, response_0: str, response_1: str, **extra: Any) -> dict:
    """One unlabelled PKU-SafeRLHF row (labels null) with the id the labels must quote back."""
    row: dict[str, Any] = {"id": pair_id, "prompt": prompt, "response_0": response_0,
                           "response_1": response_1}
    row.update({name: None for name in LABEL_FIELDS})
    row.update(extra)
    return row


def write_jsonl(rows: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def labelstudio_tasks(rows: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Label Studio import tasks (`[{"data": {...}}]`) for the export rows."""
    return [{"data": {"id": r["id"], **{k: r[k] for k in TEXT_FIELDS}}} for r in rows]


def write_labelled(rows: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Write labelled PKU-SafeRLHF rows as JSONL (what the pku_saferlhf loader reads)."""
    return write_jsonl(rows, path)


def read_export(path: str | Path) -> list[dict]:
    """The rows of an `export.jsonl`; a malformed file is an InvalidInputError naming the row."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(
            "export file not found; run the collect stage with `labeler: import` first",
            file=str(path),
        )
    rows, seen = [], set()
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InvalidInputError(f"not valid JSON ({e.msg})", file=str(path), row=lineno) from e
        for name in ("id", *TEXT_FIELDS):
            if not isinstance(row, dict) or not isinstance(row.get(name), str):
                raise InvalidInputError("expected a string", file=str(path), row=lineno, field=name)
        if row["id"] in seen:
            raise InvalidInputError(
                f"duplicate id {row['id']!r}", file=str(path), row=lineno, field="id"
            )
        seen.add(row["id"])
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------
# Import
# ------------------------------------------------------------------------------------------


def _response_id(value: Any, *, file: str, row: int, field: str) -> int:
    if isinstance(value, bool) or value not in (0, 1, "0", "1"):
        raise InvalidInputError(
            f"expected 0 or 1 (which response), got {value!r}", file=file, row=row, field=field
        )
    return int(value)


def _is_safe(value: Any, *, file: str, row: int, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("safe", "unsafe"):
        return value == "safe"
    raise InvalidInputError(
        f"expected true or false (is this response safe?), got {value!r}",
        file=file, row=row, field=field,
    )


def _parse_jsonl(text: str, file: str) -> list[tuple[int, dict]]:
    out = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise InvalidInputError(
                f"not valid JSON ({e.msg}); expected one JSON object a line", file=file, row=lineno
            ) from e
        if not isinstance(obj, dict):
            raise InvalidInputError(
                f"expected a JSON object, got {type(obj).__name__}", file=file, row=lineno
            )
        out.append((lineno, obj))
    return out


def _from_label_studio(tasks: Any, file: str) -> list[tuple[int, dict]]:
    """Flatten a Label Studio JSON export (tasks with annotations) into label rows.

    The row number is the task's 1-based position in the export. The latest non-cancelled
    annotation of a task is used; its `choices` results are keyed by `from_name`.
    """
    if not isinstance(tasks, list):
        raise InvalidInputError("expected a JSON list of Label Studio tasks", file=file)
    out = []
    for index, task in enumerate(tasks, start=1):
        data = task.get("data") if isinstance(task, dict) else None
        if not isinstance(data, dict):
            raise InvalidInputError("expected a task with a `data` object", file=file, row=index,
                                    field="data")
        label: dict[str, Any] = {"id": data.get("id")}
        annotations = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
        if annotations:
            for result in annotations[-1].get("result") or []:
                choices = (result.get("value") or {}).get("choices") or []
                if result.get("from_name") in LABEL_FIELDS and len(choices) == 1:
                    label[result["from_name"]] = choices[0]
        out.append((index, label))
    return out


def parse_labels(labels_bytes: bytes, *, labels_name: str = "labels") -> list[tuple[int, dict]]:
    """(row number, raw label object) pairs from JSONL or a Label Studio JSON export."""
    try:
        text = labels_bytes.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidInputError("expected UTF-8 text", file=labels_name) from e
    if text.lstrip().startswith("["):
        try:
            return _from_label_studio(json.loads(text), labels_name)
        except json.JSONDecodeError as e:
            raise InvalidInputError(
                f"not valid JSON ({e.msg}) at line {e.lineno}; expected a Label Studio export",
                file=labels_name,
            ) from e
    return _parse_jsonl(text, labels_name)


def validate_label(raw: Mapping[str, Any], *, file: str, row: int) -> dict[str, Any]:
    """Typed labels from one raw label object; raises InvalidInputError naming row and field."""
    for name in LABEL_FIELDS:
        if raw.get(name) is None:
            raise InvalidInputError(
                "missing label; every pair needs all of " + ", ".join(LABEL_FIELDS),
                file=file, row=row, field=name,
            )
    labels = {
        "better_response_id": _response_id(raw["better_response_id"], file=file, row=row,
                                           field="better_response_id"),
        "safer_response_id": _response_id(raw["safer_response_id"], file=file, row=row,
                                          field="safer_response_id"),
        "is_response_0_safe": _is_safe(raw["is_response_0_safe"], file=file, row=row,
                                       field="is_response_0_safe"),
        "is_response_1_safe": _is_safe(raw["is_response_1_safe"], file=file, row=row,
                                       field="is_response_1_safe"),
    }
    safer = labels["safer_response_id"]
    if not labels[f"is_response_{safer}_safe"] and labels[f"is_response_{1 - safer}_safe"]:
        raise InvalidInputError(
            f"contradictory safety labels: response {safer} is marked safer but unsafe while "
            f"response {1 - safer} is marked safe; fix safer_response_id or the is_safe flags",
            file=file, row=row, field="safer_response_id",
        )
    return labels


def merge_labels(
    export_path: str | Path,
    labels_bytes: bytes,
    *,
    labels_name: str = "labels",
    allow_partial: bool = False,
) -> list[dict]:
    """Export rows with the imported labels filled in, in export order.

    Every label must name a known, not yet labelled export id and carry all four labels,
    consistent with each other (the safer response may not be unsafe while the other is safe —
    the reference's training crash, §1.3). Unless `allow_partial`, every exported pair needs a
    label. Any violation raises InvalidInputError naming the labels file, row and field.
    """
    export = read_export(export_path)
    by_id = {row["id"]: row for row in export}
    labelled: dict[str, dict[str, Any]] = {}
    for row, raw in parse_labels(labels_bytes, labels_name=labels_name):
        pair_id = raw.get("id")
        if not isinstance(pair_id, str) or not pair_id:
            raise InvalidInputError(
                f"expected the pair id (a string from export.jsonl), got {pair_id!r}",
                file=labels_name, row=row, field="id",
            )
        if pair_id not in by_id:
            raise InvalidInputError(
                f"unknown id {pair_id!r}: not in {Path(export_path).name}",
                file=labels_name, row=row, field="id",
            )
        if pair_id in labelled:
            raise InvalidInputError(
                f"duplicate id {pair_id!r}: each pair is labelled once",
                file=labels_name, row=row, field="id",
            )
        labelled[pair_id] = validate_label(raw, file=labels_name, row=row)
    if not labelled:
        raise InvalidInputError("no labels found; expected one label row per pair",
                                file=labels_name)
    merged = []
    for export_row_number, pair in enumerate(export, start=1):
        if pair["id"] not in labelled:
            if allow_partial:
                continue
            raise InvalidInputError(
                f"no label imported for id {pair['id']!r}; {len(labelled)} of {len(export)} pairs "
                f"are labelled in {labels_name} (every exported pair needs a label)",
                file=Path(export_path).name, row=export_row_number, field="id",
            )
        merged.append({**pair, **labelled[pair["id"]]})
    return merged
