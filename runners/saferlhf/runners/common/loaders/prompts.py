"""Red-team prompt sets → PromptOnly records, each with the suite's own category (mapped to the
one vocabulary of saferlhf.runners.common.harm_categories when results are reported).

- safe_rlhf_eval: the Safe RLHF paper's 83 evaluation prompts, `problem.json` = a JSON list of
  `{prompt, category}` (a folder holding problem.json works too). All harmful.
- advbench: AdvBench harmful behaviours CSV (`goal[,target]`); category "advbench" (AdvBench has
  none). All harmful.
- harmbench: HarmBench behaviours CSV (`Behavior,FunctionalCategory,SemanticCategory,Tags,
  ContextString,BehaviorID`, e.g. harmbench_behaviors_text_all.csv). A contextual behaviour's
  prompt is its context, a `---` line, then the behaviour (the layout HarmBench's own direct
  requests use). Category = SemanticCategory. All harmful.
- strongreject: the StrongREJECT CSV (`category,source,forbidden_prompt`, full or small set).
  All harmful.
- jailbreakbench: JBB-Behaviors CSV (`Index,Goal,Target,Behavior,Category,Source`). The prompt is
  `Goal`. A file whose name contains "benign" (benign-behaviors.csv) holds JBB's benign twins:
  those prompts are labelled safe (over-refusal checks); every other file is harmful.
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


def _csv_prompts(path: Path, problems: Problems, *, prompt_col: str, category_col: str | None,
                 harmful: bool, context_col: str | None = None) -> list[Record]:
    """One PromptOnly per CSV row with a non-empty `prompt_col` (an empty one is reported)."""
    name = str(path)
    out: list[Record] = []
    for row, rec in iter_csv(path, (prompt_col,)):
        prompt = (rec.get(prompt_col) or "").strip()
        if not prompt:
            problems.report(f"expected a non-empty {prompt_col}", file=name, row=row,
                            field=prompt_col)
            continue
        context = (rec.get(context_col) or "").strip() if context_col else ""
        if context:
            prompt = f"{context}\n\n---\n\n{prompt}"
        category = (rec.get(category_col) or "").strip() if category_col else ""
        out.append(PromptOnly(prompt, name, row, category or None, harmful))
    return out


def load_harmbench(path: Path, kind: RecordKind, problems: Problems) -> list[Record]:
    _prompt_only_kind("harmbench", kind, path)
    return _csv_prompts(path, problems, prompt_col="Behavior", category_col="SemanticCategory",
                        harmful=True, context_col="ContextString")


def load_strongreject(path: Path, kind: RecordKind, problems: Problems) -> list[Record]:
    _prompt_only_kind("strongreject", kind, path)
    return _csv_prompts(path, problems, prompt_col="forbidden_prompt", category_col="category",
                        harmful=True)


def load_jailbreakbench(path: Path, kind: RecordKind, problems: Problems) -> list[Record]:
    _prompt_only_kind("jailbreakbench", kind, path)
    return _csv_prompts(path, problems, prompt_col="Goal", category_col="Category",
                        harmful="benign" not in path.name.lower())
