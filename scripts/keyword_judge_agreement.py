"""Agreement of our keyword refusal judge with XSTest's human labels.

Binarisation: a completion is a *refusal* when XSTest's `final_label` is `2_full_refusal` or
`3_partial_refusal` (both decline at least part of the request), a *compliance* when it is
`1_full_compliance`. Agreement = share of completions where `is_refusal` gives the same class.
The phrase list was tuned on TUNE_FILES only; HELD_OUT_FILES are reported separately.

    .venv/bin/python scripts/keyword_judge_agreement.py \
        [--data ../shared/data/xstest] [--out docs/results/keyword_judge_xstest.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from saferlhf.runners.evaluate.keyword import is_refusal  # noqa: E402

TUNE_FILES = ("xstest_v2_completions_gpt4.csv", "xstest_v2_completions_llama2new.csv")
HELD_OUT_FILES = (
    "xstest_v2_completions_llama2orig.csv",
    "xstest_v2_completions_mistralguard.csv",
    "xstest_v2_completions_mistralinstruct.csv",
)
REFUSAL_LABELS = {"2_full_refusal", "3_partial_refusal"}
COMPLIANCE_LABELS = {"1_full_compliance"}


def score_file(path: Path) -> dict:
    """Confusion counts and agreement of the keyword judge against one completions file."""
    tp = fp = tn = fn = 0
    partial_total = partial_agree = 0
    with path.open(newline="", encoding="utf-8") as f:
        for row_number, row in enumerate(csv.DictReader(f), start=2):
            label = row.get("final_label", "").strip()
            if label not in REFUSAL_LABELS | COMPLIANCE_LABELS:
                raise ValueError(f"{path}: row {row_number}: unexpected final_label {label!r}")
            human = label in REFUSAL_LABELS
            judged = is_refusal(row["completion"])
            if label == "3_partial_refusal":
                partial_total += 1
                partial_agree += judged
            tp += human and judged
            fn += human and not judged
            fp += judged and not human
            tn += not human and not judged
    n = tp + fp + tn + fn
    full = n - partial_total
    return {
        "n": n, "agreement": (tp + tn) / n,
        "agreement_without_partial_refusals": (tp + tn - partial_agree) / max(full, 1),
        "partial_refusals_judged_refusal": partial_agree / max(partial_total, 1),
        "refusal_precision": tp / max(tp + fp, 1),
        "refusal_recall": tp / max(tp + fn, 1),
        "confusion": {"refusal_refusal": tp, "refusal_judged_compliance": fn,
                      "compliance_judged_refusal": fp, "compliance_compliance": tn},
    }


def pooled(files: dict[str, dict], names: tuple[str, ...]) -> dict:
    rows = [files[n] for n in names if n in files]
    n = sum(r["n"] for r in rows)
    agree = sum(r["agreement"] * r["n"] for r in rows)
    return {"n": n, "agreement": agree / n if n else None, "files": list(names)}


def measure(data_dir: Path) -> dict:
    files = {name: score_file(data_dir / name) for name in TUNE_FILES + HELD_OUT_FILES}
    return {
        "binarisation": "refusal = final_label in {2_full_refusal, 3_partial_refusal}; "
                        "compliance = 1_full_compliance",
        "method": "phrase list written by hand, then tuned only on the disagreements in the "
                  "tuned_on files; held_out files were never inspected for tuning",
        "per_file": files,
        "tuned_on": pooled(files, TUNE_FILES),
        "held_out": pooled(files, HELD_OUT_FILES),
        "overall": pooled(files, TUNE_FILES + HELD_OUT_FILES),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "xstest")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/results/keyword_judge_xstest.json")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"error: XSTest data folder {args.data} not found (pass --data)", file=sys.stderr)  # noqa: T201
        return 2
    result = measure(args.data)
    result["machine"] = {"platform": platform.platform(), "python": platform.python_version(),
                         "cpus": os.cpu_count()}
    result["command"] = "python scripts/keyword_judge_agreement.py"
    result["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k]["agreement"] for k in ("tuned_on", "held_out", "overall")}))  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
