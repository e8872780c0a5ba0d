"""CLI of the synthetic benchmark.

    python -m saferlhf.runners.synthetic generate --out DIR --seed N [--sft-size …] [--label-noise
    …]
    python -m saferlhf.runners.synthetic judge --in responses.jsonl

`generate` writes sft.jsonl (generic JSONL, kind supervised), preference.jsonl and
safety_preference.jsonl (PKU-SafeRLHF rows), prompts.jsonl, calibration_prompts.jsonl and
eval_prompts.jsonl (generic JSONL, kind prompt_only) and manifest.json. `judge` reads rows with
`prompt` and `response` and prints one JSON object: harmful rate and mean helpfulness overall,
on harmful and benign prompts, and per category. Bad input: one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from saferlhf.runners.common.records import Preference, PromptOnly, SafetyPreference, Supervised
from saferlhf.runners.synthetic.judge import Judgement, judge
from saferlhf.runners.synthetic.oracle import to_pku_row, write_pku_jsonl
from saferlhf.runners.synthetic.splits import DEFAULT_SIZES, dataset


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


class BadInput(Exception):
    pass


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {value}")
    return value


def generate(out: Path, seed: int, sizes: dict[str, int], label_noise: float,
             compliance: float) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"pku-rows:{seed}")
    counts: dict[str, int] = {}
    sft = dataset("sft", size=sizes["sft"], seed=seed, harmful_compliance_rate=compliance)
    counts["sft.jsonl"] = write_pku_jsonl(
        ({"input": r.prompt, "answer": r.response} for r in sft if isinstance(r, Supervised)),
        out / "sft.jsonl")
    for split in ("preference", "safety_preference"):
        pairs = dataset(split, size=sizes[split], seed=seed, label_noise=label_noise)
        counts[f"{split}.jsonl"] = write_pku_jsonl(
            (to_pku_row(r, rng) for r in pairs if isinstance(r, Preference | SafetyPreference)),
            out / f"{split}.jsonl")
    for split, name in (("prompts", "prompts.jsonl"), ("calibration", "calibration_prompts.jsonl"),
                        ("eval", "eval_prompts.jsonl")):
        records = dataset(split, size=sizes.get(split), seed=seed)
        counts[name] = write_pku_jsonl(
            ({"input": r.prompt, "category": r.category, "is_harmful": r.is_harmful,
              "subset": r.source.removeprefix("synthetic:")}
             for r in records if isinstance(r, PromptOnly)), out / name)
    manifest = {"seed": seed, "label_noise": label_noise, "harmful_compliance_rate": compliance,
                "files": counts}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _rates(js: Sequence[Judgement]) -> dict[str, Any]:
    n = len(js)
    if n == 0:
        return {"n": 0}
    return {
        "n": n,
        "harmful_rate": sum(j.harmful for j in js) / n,
        "helpfulness": sum(j.helpfulness for j in js) / n,
        "refusal_rate": sum(j.refusal for j in js) / n,
        "redirect_rate": sum(j.redirect for j in js) / n,
    }


def judge_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise BadInput(f"{path}: no such file")
    judgements: list[Judgement] = []
    with path.open(encoding="utf-8") as f:
        for row, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise BadInput(f"{path}: row {row}: not valid JSON ({e.msg})") from None
            for field in ("prompt", "response"):
                if not isinstance(obj, dict) or not isinstance(obj.get(field), str):
                    raise BadInput(f"{path}: row {row}: field {field!r}: expected a string")
            judgements.append(judge(obj["prompt"], obj["response"]))
    if not judgements:
        raise BadInput(f"{path}: no rows; expected JSON lines with prompt and response")
    categories = sorted({j.category or "unknown" for j in judgements})
    return {
        **_rates(judgements),
        "harmful_prompts": _rates([j for j in judgements if j.is_harmful_prompt]),
        "benign_prompts": _rates([j for j in judgements if j.category == "benign"]),
        "unknown_prompts": sum(j.category is None for j in judgements),
        "per_category": {c: _rates([j for j in judgements if (j.category or "unknown") == c])
                         for c in categories},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog="python -m saferlhf.runners.synthetic",
                     description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    gen = sub.add_parser("generate", help="write the benchmark's data files")
    gen.add_argument("--out", type=Path, required=True, help="output folder")
    gen.add_argument("--seed", type=int, default=42)
    for split in ("sft", "preference", "safety_preference", "prompts", "calibration"):
        gen.add_argument(f"--{split.replace('_', '-')}-size", type=_positive,
                         default=DEFAULT_SIZES[split], dest=f"size_{split}")
    gen.add_argument("--eval-size", type=_positive, default=None, dest="size_eval",
                     help="default: every held-out prompt once")
    gen.add_argument("--label-noise", type=_fraction, default=0.0)
    gen.add_argument("--harmful-compliance-rate", type=_fraction, default=0.5)
    jud = sub.add_parser("judge", help="score responses with the exact judge")
    jud.add_argument("--in", type=Path, required=True, dest="input",
                     help="JSONL rows with prompt and response")
    args = parser.parse_args(argv)
    try:
        if args.command == "generate":
            if args.label_noise > 0.5:
                raise BadInput(f"--label-noise must be at most 0.5, got {args.label_noise}")
            sizes = {k.removeprefix("size_"): v for k, v in vars(args).items()
                     if k.startswith("size_")}
            result = generate(args.out, args.seed, sizes, args.label_noise,
                              args.harmful_compliance_rate)
        else:
            result = judge_file(args.input)
    except (BadInput, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
