"""Red-team prompt sets → PromptOnly records (all harmful by construction).

- safe_rlhf_eval: the Safe RLHF paper's 83 evaluation prompts, `problem.json` = a JSON list of
  `{prompt, category}` (a folder holding problem.json works too).
- advbench: AdvBench harmful behaviours CSV (`goal[,target]`); category "advbench".
"""

from __future__ import annotations

from pathlib import Path

from saferlhf.runners.common.config import RecordKind
from saferlhf.runners.common.errors import InvalidInputError
from saferlhf.runners.common.loaders.base import Problems, SkipRow, get_str, iter_csv, read_json
from saferlhf.runners.common.records import PromptOnly, Record


def _prompt_only_kind(fmt: str, kind: RecordKind, path: Path) -> None:
    if kind != "prompt_only":
        raise InvalidInputError(f"format {fmt} holds prompts only; use it where prompts are "
                                f"expected (kind prompt_only), not as {kind} data",
                                file=str(path), field="kind")


def load_safe_rlhf_eval(path: Path, kind: RecordKind, problems: Problems) -> list[Record]:
    _prompt_only_kind("safe_rlhf_eval", kind, path)
    if path.is_dir():
        path = path / "problem.json"
    name = str(path)
    data = read_json(path)
    if not isinstance(data, list):
        raise InvalidInputError(f"expected a JSON list of {{prompt, category}} objects, got "
                                f"{type(data).__name__}", file=name)
    out: list[Record] = []
    for row, obj in enumerate(data, start=1):
        try:
            if not isinstance(obj, dict):
                raise problems.report(f"expected an object, got {type(obj).__name__}",
                                      file=name, row=row)
            prompt = get_str(obj, "prompt", name, row, problems)
            category = get_str(obj, "category", name, row, problems)
        except SkipRow:
            continue
        out.append(PromptOnly(prompt, name, row, category, True))
    return out


def load_advbench(path: Path, kind: RecordKind, problems: Problems) -> list[Record]:
    _prompt_only_kind("advbench", kind, path)
    out: list[Record] = []
    for row, rec in iter_csv(path, ("goal",)):
        if not rec["goal"].strip():
            problems.report("expected a non-empty goal", file=str(path), row=row, field="goal")
            continue
        out.append(PromptOnly(rec["goal"], str(path), row, "advbench", True))
    return out
