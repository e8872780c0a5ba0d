"""Generic JSONL in the reference's raw-sample schema (§1.1); `kind` says the record type:

| kind              | fields per row                                                      |
|-------------------|---------------------------------------------------------------------|
| supervised        | input, answer   — or — dialogue (user, assistant, …, assistant turns) |
| preference        | input, answer, other_answer, better (true: answer is better)        |
| safety_preference | input, answer, other_answer, safer, is_safe, is_other_safe          |
| safety_labelled_preference | input, answer, other_answer, better, is_safe, is_other_safe |
| prompt_only       | input; optional category (string), is_harmful (bool)                |

`input` is a string or a list of turns of odd length ending on a user turn. prompt_only rows are
de-duplicated (first occurrence kept), as the reference does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from saferlhf.runners.common.config import RecordKind
from saferlhf.runners.common.loaders import pairs
from saferlhf.runners.common.loaders.base import (
    Problems,
    SkipRow,
    get_bool,
    get_prompt,
    get_str,
    iter_jsonl,
)
from saferlhf.runners.common.records import PromptOnly, Record, Supervised, prompt_key


def _supervised(obj: dict[str, Any], name: str, row: int, problems: Problems) -> Supervised:
    if "dialogue" in obj:
        if "input" in obj or "answer" in obj:
            raise problems.report("give either dialogue or input+answer, not both", file=name,
                                  row=row, field="dialogue")
        turns = obj["dialogue"]
        if (not isinstance(turns, list) or len(turns) < 2 or len(turns) % 2
                or not all(isinstance(t, str) and t.strip() for t in turns)):
            raise problems.report("expected a list of non-empty strings alternating user and "
                                  "assistant turns, ending on an assistant turn", file=name,
                                  row=row, field="dialogue")
        prompt = turns[0] if len(turns) == 2 else tuple(turns[:-1])
        return Supervised(prompt, turns[-1], name, row)
    prompt = get_prompt(obj, "input", name, row, problems)
    return Supervised(prompt, get_str(obj, "answer", name, row, problems), name, row)


def _prompt_only(obj: dict[str, Any], name: str, row: int, problems: Problems) -> PromptOnly:
    prompt = get_prompt(obj, "input", name, row, problems)
    category = obj.get("category")
    if category is not None and not isinstance(category, str):
        raise problems.report(f"expected a string, got {type(category).__name__}", file=name,
                              row=row, field="category")
    harmful = get_bool(obj, "is_harmful", name, row, problems) if "is_harmful" in obj else None
    return PromptOnly(prompt, name, row, category, harmful)


def load_jsonl(path: Path, kind: RecordKind, problems: Problems) -> list[Record]:
    name = str(path)
    out: list[Record] = []
    seen: set[str] = set()
    for row, obj in iter_jsonl(path, problems):
        if problems.full:
            break
        try:
            if kind == "supervised":
                out.append(_supervised(obj, name, row, problems))
                continue
            if kind == "prompt_only":
                record = _prompt_only(obj, name, row, problems)
                if prompt_key(record.prompt) not in seen:
                    seen.add(prompt_key(record.prompt))
                    out.append(record)
                continue
            prompt = get_prompt(obj, "input", name, row, problems)
            answer = get_str(obj, "answer", name, row, problems)
            other = get_str(obj, "other_answer", name, row, problems)
            if kind == "preference":
                better = get_bool(obj, "better", name, row, problems)
                out.append(pairs.preference(prompt, answer, other, better, file=name, row=row,
                                            problems=problems, field="other_answer"))
                continue
            if kind == "safety_labelled_preference":
                better = get_bool(obj, "better", name, row, problems)
                is_safe = get_bool(obj, "is_safe", name, row, problems)
                is_other_safe = get_bool(obj, "is_other_safe", name, row, problems)
                out.append(pairs.safety_labelled_preference(
                    prompt, answer, other, better, is_safe, is_other_safe, file=name, row=row,
                    problems=problems, field="other_answer"))
                continue
            safer = get_bool(obj, "safer", name, row, problems)
            is_safe = get_bool(obj, "is_safe", name, row, problems)
            is_other_safe = get_bool(obj, "is_other_safe", name, row, problems)
            out.append(pairs.safety_preference(
                prompt, answer, other, safer, is_safe, is_other_safe, file=name, row=row,
                problems=problems, fields=("other_answer", "safer")))
        except SkipRow:
            continue
    return out
