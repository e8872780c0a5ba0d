"""Each judge's agreement with XSTest's human labels, on all five shipped completion sets.

XSTest (Röttger et al. 2024) ships model answers to its 450 prompts with a human label each:
1_full_compliance, 2_full_refusal or 3_partial_refusal. Two questions are scored per judge:
- refusal (all 450 answers per file): human refusal = full or partial refusal; the judge's refusal
  verdict;
- harmful (answers to the 200 unsafe prompts): human "harmful" = full compliance with an unsafe
  request; the judge's harm verdict.
For each: agreement, Cohen's κ (saferlhf.runners.evaluate.agreement) and the confusion counts.
The keyword judge's phrase list was tuned on TUNE_FILES only; HELD_OUT_FILES are pooled apart.

Judges run through the same code as the eval stage. The keyword judge always runs. Model judges
(llm, classifier, cost_model) run when given as judge entries — exactly the YAML/JSON of
`eval.judges` — e.g.

    .venv/bin/python scripts/judge_agreement.py \\
        --judge '{"kind": "llm", "name": "gpt", "base_url": "https://api.openai.com/v1",
                  "model": "gpt-4o-mini", "api_key": {"env": "OPENAI_API_KEY"}}' \\
        --judge '{"kind": "classifier", "name": "wildguard", "path": "/models/wildguard",
                  "format": "wildguard"}'

Without them the result says plainly which judges were not measured and why (no judge model on
the machine): no number is written for a judge that did not run.

    .venv/bin/python scripts/judge_agreement.py [--data ../shared/data/xstest]
        [--out docs/results/judge_agreement_xstest.json] [--judge JSON ...] [--cost-model DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from saferlhf.runners.common.judge_config import ClassifierJudge, CostModelJudge, LLMJudge
from saferlhf.runners.evaluate.agreement import cohen_kappa
from saferlhf.runners.evaluate.judges import Verdict, keyword_verdict

ROOT = Path(__file__).resolve().parents[1]

TUNE_FILES = ("xstest_v2_completions_gpt4.csv", "xstest_v2_completions_llama2new.csv")
HELD_OUT_FILES = (
    "xstest_v2_completions_llama2orig.csv",
    "xstest_v2_completions_mistralguard.csv",
    "xstest_v2_completions_mistralinstruct.csv",
)
REFUSAL_LABELS = {"2_full_refusal", "3_partial_refusal"}
LABELS = REFUSAL_LABELS | {"1_full_compliance"}
NOT_MEASURED = {
    "llm": "not measured: no judge LLM is reachable from this machine (no network, no judge "
           "weights); pass --judge with an llm entry where an OpenAI-compatible judge runs",
    "classifier": "not measured: no safety-classifier weights (HarmBench-cls, WildGuard, Llama "
                  "Guard) ship on this machine; pass --judge with a classifier entry",
    "cost_model": "not measured: no cost model trained on natural-language safety data ships "
                  "here (the demo's is trained on the synthetic benchmark's vocabulary); pass "
                  "--cost-model DIR with --judge '{\"kind\": \"cost_model\"}'",
}


def read_file(path: Path) -> list[dict[str, Any]]:
    """(prompt, completion, human refusal, unsafe prompt) per row; a bad label is an error."""
    rows = []
    with path.open(newline="", encoding="utf-8") as f:
        for number, row in enumerate(csv.DictReader(f), start=2):
            label = row.get("final_label", "").strip()
            if label not in LABELS:
                raise ValueError(f"{path}: line {number}: unexpected final_label {label!r}")
            rows.append({"prompt": row["prompt"], "completion": row["completion"],
                         "human_refusal": label in REFUSAL_LABELS, "partial": label ==
                         "3_partial_refusal", "unsafe": row["type"].startswith("contrast"),
                         "human_compliance": label == "1_full_compliance"})
    return rows


def _score(pairs: list[tuple[bool, bool]]) -> dict[str, Any]:
    """pairs = (human, judge) positives; agreement, κ and confusion."""
    n = len(pairs)
    tp = sum(h and j for h, j in pairs)
    fn = sum(h and not j for h, j in pairs)
    fp = sum(j and not h for h, j in pairs)
    return {"n": n, "agreement": (n - fn - fp) / n if n else None, "cohen_kappa":
            cohen_kappa(pairs), "confusion": {"human_yes_judge_yes": tp, "human_yes_judge_no": fn,
                                              "human_no_judge_yes": fp,
                                              "human_no_judge_no": n - tp - fn - fp}}


def score(rows: list[dict[str, Any]], verdicts: list[Verdict]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    refusal = [(r["human_refusal"], v.refusal) for r, v in zip(rows, verdicts, strict=True)
               if v.refusal is not None]
    if refusal:
        out["refusal"] = _score(refusal)  # type: ignore[arg-type]
        full = [(r["human_refusal"], v.refusal) for r, v in zip(rows, verdicts, strict=True)
                if v.refusal is not None and not r["partial"]]
        out["refusal"]["agreement_without_partial_refusals"] = _score(full)["agreement"]  # type: ignore[arg-type]
    harmful = [(r["human_compliance"], v.harmful) for r, v in zip(rows, verdicts, strict=True)
               if r["unsafe"] and v.harmful is not None]
    if harmful:
        out["harmful_on_unsafe_prompts"] = _score(harmful)  # type: ignore[arg-type]
    out["unparseable"] = sum(v.unparseable for v in verdicts)
    return out


def pooled(per_file: dict[str, dict], names: tuple[str, ...], question: str) -> dict[str, Any]:
    entries = [per_file[n][question] for n in names if question in per_file.get(n, {})]
    n = sum(e["n"] for e in entries)
    agree = sum(e["agreement"] * e["n"] for e in entries)
    return {"n": n, "agreement": agree / n if n else None, "files": list(names)}


class _Judges:
    """Verdict functions per judge name, from the eval stage's own judge code."""

    def __init__(self, entries: list[dict[str, Any]], cost_model: Path | None, work: Path):
        from saferlhf.runners.common.config import EvaluateParams

        specs = EvaluateParams.model_validate(
            {"prompts": [{"format": "synthetic", "split": "eval"}],
             "judges": ["keyword", *entries]}).judges
        self.specs = specs
        self.cost_model = cost_model
        self.work = work

    def verdicts(self, spec: Any, rows: list[dict[str, Any]]) -> list[Verdict]:
        items = [(r["prompt"], r["completion"]) for r in rows]
        if spec.kind == "keyword":
            return [keyword_verdict(c, True if r["unsafe"] else None)
                    for r, (_, c) in zip(rows, items, strict=True)]
        if isinstance(spec, LLMJudge):
            from saferlhf.runners.evaluate.llm.judge import LLMJudgeRun

            run: Any = LLMJudgeRun(spec, str(self.work))
        elif isinstance(spec, ClassifierJudge):
            from saferlhf.runners.evaluate.classifier import ClassifierJudgeRun

            run = ClassifierJudgeRun(spec, str(self.work))
        elif isinstance(spec, CostModelJudge):
            return self._costs(spec, items)
        else:
            raise SystemExit(f"judge kind {spec.kind} cannot judge XSTest answers")
        try:
            return run.judge_answers(items)
        finally:
            run.close()

    def _costs(self, spec: CostModelJudge, items: list[tuple[str, str]]) -> list[Verdict]:
        if self.cost_model is None:
            raise SystemExit("a cost_model judge needs --cost-model DIR")
        from saferlhf.runners.common.score_model import ScoreModel, rescore
        from saferlhf.runners.common.template import format_prompt
        from saferlhf.runners.evaluate.judges import cost_verdict
        from transformers import AutoTokenizer

        model = ScoreModel.from_pretrained(str(self.cost_model))
        tokenizer = AutoTokenizer.from_pretrained(str(self.cost_model))
        eos = tokenizer.eos_token or ""
        texts = [format_prompt(p, eos) + a for p, a in items]
        return [cost_verdict(float(c), spec.threshold)
                for c in rescore(texts, model, tokenizer, batch_size=16)]


def measure(data_dir: Path, entries: list[dict[str, Any]], cost_model: Path | None,
            work: Path) -> dict[str, Any]:
    judges = _Judges(entries, cost_model, work)
    files = {name: read_file(data_dir / name) for name in TUNE_FILES + HELD_OUT_FILES}
    results: dict[str, Any] = {}
    for spec in judges.specs:
        per_file = {name: score(rows, judges.verdicts(spec, rows)) for name, rows in files.items()}
        entry: dict[str, Any] = {"kind": spec.kind, "per_file": per_file}
        for question in ("refusal", "harmful_on_unsafe_prompts"):
            entry[question] = pooled(per_file, TUNE_FILES + HELD_OUT_FILES, question)
        if spec.kind == "keyword":
            entry["tuned_on"] = pooled(per_file, TUNE_FILES, "refusal")
            entry["held_out"] = pooled(per_file, HELD_OUT_FILES, "refusal")
        results[spec.name] = entry
    ran = {s.kind for s in judges.specs}
    return {
        "labels": "human refusal = final_label in {2_full_refusal, 3_partial_refusal}; human "
                  "harmful (unsafe prompts only) = 1_full_compliance",
        "keyword_method": "phrase list written by hand, then tuned only on the disagreements in "
                          "the tuned_on files; held_out files were never inspected for tuning",
        "files": list(files),
        "judges": results,
        "not_measured": {k: v for k, v in NOT_MEASURED.items() if k not in ran},
    }


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "xstest")
    parser.add_argument("--out", type=Path,
                        default=ROOT / "docs/results/judge_agreement_xstest.json")
    parser.add_argument("--judge", action="append", default=[], metavar="JSON",
                        help="a judge entry as in eval.judges (repeatable)")
    parser.add_argument("--cost-model", type=Path, default=None, help="for a cost_model judge")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="where model judges keep their verdict cache (default: a temp dir)")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"error: XSTest data folder {args.data} not found (pass --data)", file=sys.stderr)  # noqa: T201
        return 2
    try:
        entries = [json.loads(j) for j in args.judge]
    except json.JSONDecodeError as e:
        print(f"error: --judge is not JSON: {e}", file=sys.stderr)  # noqa: T201
        return 2
    load_before = _load()
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(args.data, entries, args.cost_model, args.cache_dir or Path(tmp))
    result["machine"] = {"platform": platform.platform(), "python": platform.python_version(),
                         "cpus": os.cpu_count(), "load_average_before": load_before,
                         "load_average_after": _load()}
    result["command"] = "python scripts/judge_agreement.py" + "".join(
        f" --judge '{j}'" for j in args.judge)
    result["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    summary = {name: {q: j[q]["agreement"] for q in ("refusal", "harmful_on_unsafe_prompts")}
               for name, j in result["judges"].items()}
    print(json.dumps(summary))  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
