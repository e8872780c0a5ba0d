"""XSTest (Röttger et al. 2024) → prompt-only records and DERIVED comparison pairs.

- `xstest_prompts.csv` (`id,prompt,type,label,…`) → PromptOnly with `is_harmful = label == "unsafe"`
  and `category = type` (the dataset's own labels, not derived).
- `xstest_v2_completions_*.csv` (`id,type,prompt,completion,…,final_label`, human labels
  1_full_compliance | 2_full_refusal | 3_partial_refusal) → pairs we DERIVE (`derived=True`):
  answers are grouped by prompt (same id and same prompt text) across every completions file given;
  then
    * unsafe prompt: every (full refusal, full compliance) pair is a SafetyPreference with the
      refusal safer and labelled safe, the compliance labelled unsafe;
    * safe prompt: every (full compliance, full refusal) pair is a Preference with the
      compliance better (refusing a safe request is unhelpful).
  Partial refusals are ambiguous on both axes and are left out; so are safe-prompt pairs for the
  cost model and unsafe-prompt pairs for the reward model (XSTest says nothing there).
  Whether a prompt is unsafe comes from `xstest_prompts.csv` beside the completions when present,
  else from the type (XSTest's unsafe prompts are exactly its `contrast_*` types).
The path is one CSV file or a folder; for a folder, prompt_only reads `xstest_prompts.csv` and the
pair kinds read every `xstest_v2_completions_*.csv` in it (sorted by name). A pair's `source` and
`row` are those of its safer (or better) answer.
"""

from __future__ import annotations

from pathlib import Path

from saferlhf.runners.common.config import RecordKind
from saferlhf.runners.common.errors import InvalidInputError
from saferlhf.runners.common.loaders import pairs
from saferlhf.runners.common.loaders.base import Problems, SkipRow, iter_csv
from saferlhf.runners.common.records import PromptOnly, Record

PROMPTS_FILE = "xstest_prompts.csv"
COMPLETIONS_GLOB = "xstest_v2_completions_*.csv"
LABELS = ("1_full_compliance", "2_full_refusal", "3_partial_refusal")


def _prompt_labels(path: Path, problems: Problems) -> dict[str, bool]:
    """id → is_harmful, from xstest_prompts.csv."""
    out: dict[str, bool] = {}
    for row, rec in iter_csv(path, ("id", "prompt", "label")):
        if rec["label"] not in ("safe", "unsafe"):
            problems.report(f"expected safe or unsafe, got {rec['label']!r}", file=str(path),
                            row=row, field="label")
            continue
        out[rec["id"]] = rec["label"] == "unsafe"
    return out


def load_xstest_prompts(path: Path, problems: Problems) -> list[Record]:
    out: list[Record] = []
    for row, rec in iter_csv(path, ("id", "prompt", "type", "label")):
        if not rec["prompt"].strip():
            problems.report("expected a non-empty prompt", file=str(path), row=row, field="prompt")
            continue
        if rec["label"] not in ("safe", "unsafe"):
            problems.report(f"expected safe or unsafe, got {rec['label']!r}", file=str(path),
                            row=row, field="label")
            continue
        out.append(PromptOnly(rec["prompt"], str(path), row, rec["type"],
                              rec["label"] == "unsafe"))
    return out


Answer = tuple[str, int, str]  # (file, row, completion)


def _group_answers(files: list[Path], problems: Problems
                   ) -> tuple[dict[tuple[str, str], dict[str, list[Answer]]], dict[str, str]]:
    """((id, prompt) → label → answers in file order, id → XSTest type)."""
    groups: dict[tuple[str, str], dict[str, list[Answer]]] = {}
    types: dict[str, str] = {}
    for path in files:
        for row, rec in iter_csv(path, ("id", "type", "prompt", "completion", "final_label")):
            if rec["final_label"] not in LABELS:
                problems.report(f"expected one of {', '.join(LABELS)}, got "
                                f"{rec['final_label']!r}", file=str(path), row=row,
                                field="final_label")
                continue
            if not rec["completion"].strip():
                problems.report("expected a non-empty completion", file=str(path), row=row,
                                field="completion")
                continue
            key = (rec["id"].removeprefix("v2-"), rec["prompt"])
            types[key[0]] = rec["type"]
            group = groups.setdefault(key, {})
            group.setdefault(rec["final_label"], []).append((str(path), row, rec["completion"]))
    return groups, types


def load_xstest_pairs(files: list[Path], kind: RecordKind, problems: Problems,
                      labels: dict[str, bool] | None) -> list[Record]:
    out: list[Record] = []
    groups, types = _group_answers(files, problems)
    for (pid, prompt), group in groups.items():
        harmful = labels[pid] if labels and pid in labels else types[pid].startswith("contrast")
        comply, refuse = group.get(LABELS[0], []), group.get(LABELS[1], [])
        for r_file, r_row, r_text in refuse:
            for c_file, c_row, c_text in comply:
                try:
                    if kind == "safety_preference" and harmful:
                        out.append(pairs.safety_preference(
                            prompt, r_text, c_text, True, True, False, file=r_file, row=r_row,
                            problems=problems, fields=("completion", "final_label"),
                            derived=True))
                    elif kind == "preference" and not harmful:
                        out.append(pairs.preference(
                            prompt, c_text, r_text, True, file=c_file, row=c_row,
                            problems=problems, field="completion", derived=True))
                except SkipRow:
                    continue
    return out


def load_xstest(path: Path, kind: RecordKind, problems: Problems) -> list[Record]:
    folder = path if path.is_dir() else path.parent
    if kind == "prompt_only":
        return load_xstest_prompts(path / PROMPTS_FILE if path.is_dir() else path, problems)
    if kind not in ("preference", "safety_preference"):
        raise InvalidInputError(
            f"format xstest gives prompt_only, preference or safety_preference records, not "
            f"{kind}", file=str(path), field="kind")
    files = sorted(folder.glob(COMPLETIONS_GLOB)) if path.is_dir() else [path]
    if not files:
        raise InvalidInputError(f"no {COMPLETIONS_GLOB} files in this folder", file=str(path),
                                field="path")
    prompts_file = folder / PROMPTS_FILE
    labels = _prompt_labels(prompts_file, problems) if prompts_file.is_file() else None
    return load_xstest_pairs(files, kind, problems, labels)
