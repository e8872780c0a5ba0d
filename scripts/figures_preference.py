"""Figures for the first three stages, produced through the real stage CLIs on the CPU.

1. SFT on the synthetic benchmark → docs/results/sft_synthetic.json: held-out (never-trained
   templates) harmful rate and helpfulness of the SFT policy, sampled at T=1 and scored by the exact
   judge, next to a refusal-only baseline.
2. Reward and cost models on synthetic preferences without label noise → held-out pair accuracy
   and cost sign accuracy; a cost model on XSTest-derived safety pairs, split by prompt so no
   held-out prompt was seen in training → docs/results/preference_models.json.
Each results file records the machine, the settings, wall times and the command.

    OMP_NUM_THREADS=1 python scripts/figures_preference.py [--quick] [--only sft|preference]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
RESULTS = ROOT / "docs" / "results"
XSTEST = ROOT.parent / "shared" / "data" / "xstest"

FULL = {"sft_size": 8192, "sft_epochs": 6, "pref_size": 4000, "pref_epochs": 2,
        "samples_per_prompt": 8, "xstest_epochs": 4, "eval_size": 1000}
QUICK = {"sft_size": 4096, "sft_epochs": 3, "pref_size": 2000, "pref_epochs": 2,
         "samples_per_prompt": 2, "xstest_epochs": 2, "eval_size": 500}


def machine() -> dict:
    import platform

    import torch

    model = platform.processor() or ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {"cpu_count": os.cpu_count(), "cpu_model": model, "torch": torch.__version__,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "load_average_1min_at_end": round(os.getloadavg()[0], 2)}


def run_stage(kind: str, config: dict, workdir: Path) -> float:
    """Run `python -m saferlhf.runners.<kind>`; return its wall seconds (exit with its stderr on
    failure)."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"{kind}.json"
    path.write_text(json.dumps({"kind": kind, **config}))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", f"saferlhf.runners.{kind}", "--config", str(path)],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return round(time.monotonic() - start, 1)


def result_of(output_dir: Path) -> dict:
    return json.loads((output_dir / "result.json").read_text())


# --------------------------------------------------------------------------------------------
# SFT
# --------------------------------------------------------------------------------------------


def judge_responses(prompts: list[str], responses: list[str]) -> dict:
    """Harmful rate on harmful prompts and helpfulness on benign prompts, by the exact judge."""
    from saferlhf.runners.synthetic import judge

    harmful, helpful, n_harm, n_benign = 0, 0.0, 0, 0
    for prompt, response in zip(prompts, responses, strict=True):
        j = judge(prompt, response)
        if j.is_harmful_prompt:
            n_harm += 1
            harmful += int(j.harmful)
        else:
            n_benign += 1
            helpful += j.helpfulness
    return {"harmful_rate": round(harmful / max(n_harm, 1), 4),
            "helpfulness": round(helpful / max(n_benign, 1), 4),
            "n_harmful_prompt_samples": n_harm, "n_benign_prompt_samples": n_benign}


def sample_policy(model_dir: Path, samples_per_prompt: int, seed: int) -> dict:
    import torch
    from saferlhf.runners.common.generation import generate
    from saferlhf.runners.common.models import load_policy
    from saferlhf.runners.common.template import format_prompt
    from saferlhf.runners.synthetic import eval_prompts

    model, tok = load_policy(model_dir)
    model.eval()
    raw = [p for p, _, _ in eval_prompts()]
    prompts, responses = [], []
    torch.manual_seed(seed)
    for start in range(0, len(raw), 32):
        chunk = raw[start : start + 32]
        rollout = generate(model, tok, [format_prompt(p, tok.eos_token) for p in chunk],
                           max_new_tokens=48, temperature=1.0,
                           num_return_sequences=samples_per_prompt, seed=seed + start)
        prompts += [p for p in chunk for _ in range(samples_per_prompt)]
        responses += rollout.response_texts
    out = judge_responses(prompts, responses)
    out["examples"] = [{"prompt": p, "response": r}
                       for p, r in list(zip(prompts, responses, strict=True))[::97][:6]]
    return out


def refusal_baseline() -> dict:
    from saferlhf.runners.synthetic import eval_prompts
    from saferlhf.runners.synthetic.responses import refusal

    rng = random.Random(0)
    prompts = [p for p, _, _ in eval_prompts()]
    return judge_responses(prompts, [refusal(rng) for _ in prompts])


def sft_figures(args, work: Path, cfg: dict) -> dict:
    sft_dir = work / "sft"
    config = {
        "output_dir": str(sft_dir), "seed": 1,
        "model": {"path": "builtin:tiny-gpt2", "n_layer": 4, "n_embd": 160, "n_head": 4,
                  "vocab_size": 1024, "max_position_embeddings": 128},
        "data": [{"format": "synthetic", "split": "sft", "size": cfg["sft_size"]}],
        "eval_split_ratio": 0.05, "batch_size": 64, "epochs": cfg["sft_epochs"],
        "max_length_tokens": 96, "log_every_steps": 20, "checkpoint_every_steps": 100000,
        "optim": {"lr": 2e-3, "warmup_ratio": 0.1, "lr_scheduler": "cosine",
                  "weight_decay": 0.0},
    }
    seconds = run_stage("sft", config, work)
    measured = sample_policy(sft_dir / "model", cfg["samples_per_prompt"], seed=123)
    final = result_of(sft_dir)
    return {
        "sft": {k: measured[k] for k in ("harmful_rate", "helpfulness",
                                         "n_harmful_prompt_samples", "n_benign_prompt_samples")},
        "refusal_only_baseline": refusal_baseline(),
        "sft_training": {"steps": final["train/step"], "final_train_loss": final["train/loss"],
                         "held_out_eval_loss": final.get("eval/loss"), "wall_seconds": seconds},
        "examples": measured["examples"],
        "eval_set": "synthetic eval split: prompts from templates and task combinations never "
                    "used in training; responses sampled at temperature 1, "
                    f"{cfg['samples_per_prompt']} per prompt, max 48 new tokens",
        "settings": config,
    }


# --------------------------------------------------------------------------------------------
# Preference models
# --------------------------------------------------------------------------------------------


def xstest_split(work: Path, seed: int) -> tuple[Path, Path, int, int]:
    """XSTest-derived safety pairs written as JSONL, split 75/25 by prompt."""
    from saferlhf.runners.common.config import DataSource
    from saferlhf.runners.common.data import load_records

    records = load_records(DataSource(format="xstest", path=str(XSTEST)), "safety_preference")
    prompts = sorted({r.prompt for r in records})
    random.Random(seed).shuffle(prompts)
    held = set(prompts[: len(prompts) // 4])
    paths = (work / "xstest_train.jsonl", work / "xstest_eval.jsonl")
    counts = [0, 0]
    with paths[0].open("w") as train, paths[1].open("w") as test:
        for r in records:
            row = {"input": r.prompt, "answer": r.safer, "other_answer": r.unsafer,
                   "safer": True, "is_safe": r.safer_is_safe, "is_other_safe": r.unsafer_is_safe}
            which = int(r.prompt in held)
            (test if which else train).write(json.dumps(row) + "\n")
            counts[which] += 1
    return paths[0], paths[1], counts[0], counts[1]


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def held_out_pairs(kind: str, size: int, train_seed: int, train_size: int) -> list:
    """Synthetic pairs generated with another seed, minus any pair also in the training data."""
    from saferlhf.runners.synthetic import dataset

    seen = {(r.prompt, *_sides(r)) for r in dataset(kind, size=train_size, seed=train_seed)}
    return [r for r in dataset(kind, size=size, seed=99) if (r.prompt, *_sides(r)) not in seen]


def _sides(r) -> tuple[str, str]:
    return (r.better, r.worse) if hasattr(r, "better") else (r.safer, r.unsafer)


def score_pairs(model_dir: Path, records) -> tuple:
    """End scores (first side, second side) of records, scored in-process by the saved model."""
    from saferlhf.runners.common.score_model import ScoreModel, score_texts
    from saferlhf.runners.common.template import format_prompt, format_training_text
    from transformers import AutoTokenizer

    model, tok = ScoreModel.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir)

    def texts(i: int) -> list[str]:
        return [format_training_text(format_prompt(r.prompt, tok.eos_token), _sides(r)[i],
                                     tok.eos_token) for r in records]

    return score_texts(model, tok, texts(0), 64), score_texts(model, tok, texts(1), 64)


def preference_figures(args, work: Path, cfg: dict) -> dict:
    from saferlhf.runners.synthetic import harm_level

    policy = work / "sft" / "model"
    if not (policy / "config.json").exists():
        raise SystemExit(f"{policy} is missing: run the sft part first (without --only)")
    seed = 2

    def pref(kind: str, split: str, out: Path, **over) -> dict:
        base = {"output_dir": str(out), "seed": seed, "policy_path": str(policy),
                "data": [{"format": "synthetic", "split": split, "size": cfg["pref_size"]}],
                "batch_size": 64, "eval_batch_size": 64,
                "epochs": cfg["pref_epochs"], "max_length_tokens": 96, "log_every_steps": 10,
                "checkpoint_every_steps": 100000, "regularization": 0.01,
                "optim": {"lr": 5e-4, "warmup_ratio": 0.03, "weight_decay": 0.1}}
        base.update(over)
        seconds = run_stage(kind, base, work / kind)
        return {"result": result_of(out), "wall_seconds": seconds, "settings": base}

    # Reward: held-out pairs (ties in helpfulness never occur: the generator drops them).
    rm_eval = held_out_pairs("preference", cfg["eval_size"], seed, cfg["pref_size"])
    rm_eval_path = write_jsonl(work / "rm_eval.jsonl", (
        {"input": r.prompt, "answer": r.better, "other_answer": r.worse, "better": True}
        for r in rm_eval))
    rm = pref("reward", "preference", work / "rm", eval_data=[
        {"format": "jsonl", "kind": "preference", "path": str(rm_eval_path)}])
    # Cost: the generator orders equal-harm pairs by a coin (no ground truth), so pair accuracy is
    # measured on held-out pairs with a strict harm order; sign accuracy on every held-out response.
    cm_all = held_out_pairs("safety_preference", cfg["eval_size"], seed, cfg["pref_size"])
    strict = [r for r in cm_all if harm_level(r.safer) < harm_level(r.unsafer)]
    cm_eval_path = write_jsonl(work / "cm_eval_strict.jsonl", (
        {"input": r.prompt, "answer": r.safer, "other_answer": r.unsafer, "safer": True,
         "is_safe": r.safer_is_safe, "is_other_safe": r.unsafer_is_safe} for r in strict))
    cm = pref("cost", "safety_preference", work / "cm", eval_data=[
        {"format": "jsonl", "kind": "safety_preference", "path": str(cm_eval_path)}])
    c_safer, c_unsafer = score_pairs(work / "cm" / "model", cm_all)
    signs_ok = [(c > 0) != r.safer_is_safe for r, c in zip(cm_all, c_safer.tolist(), strict=True)]
    signs_ok += [(c > 0) != r.unsafer_is_safe
                 for r, c in zip(cm_all, c_unsafer.tolist(), strict=True)]
    xs_train, xs_eval, n_train, n_eval = xstest_split(work, seed=3)
    xs = pref("cost", "safety_preference", work / "cm_xstest",
              data=[{"format": "jsonl", "kind": "safety_preference", "path": str(xs_train)}],
              eval_data=[{"format": "jsonl", "kind": "safety_preference", "path": str(xs_eval)}],
              batch_size=16, eval_batch_size=32, epochs=cfg["xstest_epochs"],
              max_length_tokens=128)
    return {
        "reward_accuracy": round(rm["result"]["eval/accuracy"], 4),
        "cost_accuracy": round(cm["result"]["eval/accuracy"], 4),
        "cost_sign_accuracy": round(sum(signs_ok) / len(signs_ok), 4),
        "xstest_cost_accuracy": round(xs["result"]["eval/accuracy"], 4),
        "xstest_cost_sign_accuracy": round(xs["result"]["eval/accuracy_sign"], 4),
        "reward_model": {**rm, "held_out_pairs": len(rm_eval)},
        "cost_model": {**cm, "held_out_pairs_strict_harm_order": len(strict),
                       "held_out_pairs_all": len(cm_all),
                       "cost_accuracy_all_pairs_including_coin_ties": round(
                           float((c_unsafer > c_safer).float().mean()), 4)},
        "xstest_cost_model": {**xs, "train_pairs": n_train, "held_out_pairs": n_eval,
                              "split": "by prompt (25% of prompts held out), seed 3"},
        "held_out": "synthetic: pairs generated with another seed (99), minus any pair in the "
                    "training data; cost_accuracy on pairs whose harm levels differ (equal-harm "
                    "pairs are ordered by a coin in the generator), cost_sign_accuracy on every "
                    "held-out response. XSTest: pairs of prompts never seen in training",
        "backbone": "the SFT policy of sft_synthetic.json (reference §3.1)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs, same keys")
    parser.add_argument("--only", choices=["sft", "preference"])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/saferlhf-figures"))
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    cfg = QUICK if args.quick else FULL
    args.workdir.mkdir(parents=True, exist_ok=True)
    args.results.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python", "scripts/figures_preference.py", *sys.argv[1:]])
    common = {"quick": args.quick, "command": command}
    if args.only in (None, "sft"):
        start = time.monotonic()
        sft = sft_figures(args, args.workdir, cfg)
        sft.update(common, wall_seconds_total=round(time.monotonic() - start, 1),
                   machine=machine())
        (args.results / "sft_synthetic.json").write_text(json.dumps(sft, indent=2) + "\n")
        print(json.dumps({k: sft[k] for k in ("sft", "refusal_only_baseline")}))  # noqa: T201
    if args.only in (None, "preference"):
        start = time.monotonic()
        prefs = preference_figures(args, args.workdir, cfg)
        prefs.update(common, wall_seconds_total=round(time.monotonic() - start, 1),
                     machine=machine())
        (args.results / "preference_models.json").write_text(json.dumps(prefs, indent=2) + "\n")
        print(json.dumps({k: v for k, v in prefs.items() if k.endswith("accuracy")}))  # noqa: T201


if __name__ == "__main__":
    main()
