"""The paper's experiment at toy scale (issue: PPO-Lagrangian, baselines, rounds; issue 14: DPO,
SafeDPO and cheap-first escalation).

On the synthetic benchmark, from one SFT model (about 50% harmful), run for 3 rounds each:
PPO (reward only), reward shaping with two fixed ν, PPO-Lagrangian with a calibrated 2% safety
budget, and — the ablation — PPO-Lagrangian with the reference default threshold d = 0. Beside
them, the offline methods from the same SFT model, one stage each and no RM, CM or sampling:
plain DPO on the helpfulness labels and SafeDPO on the safety-labelled pairs; and the
escalation form (spec.escalation) over each: keep the offline policy when its held-out harmful
rate meets the same 2% budget, else run one round of PPO-Lag (2% budget, round-1 RM/CM) from it,
decided by the control plane's own gate rule (saferlhf.service.scheduler.gates). Round 1
uses reward and cost models trained on the benchmark's preference splits; every later round
samples from the previous round's policy, labels the pairs with the benchmark's exact functions
(`labeler: oracle`), retrains RM and CM on all labels so far, and runs the RL stage from the
previous policy (reference = the SFT model). Each round ends with an evaluation on held-out
templates by the exact judge, with an arena over SFT and every round so far.

Every stage runs through the real runner contract (`python -m saferlhf.runners.<kind> --config
stage.json`), exactly as the control plane launches it. Writes `docs/results/toy_safe_rlhf.json`
and two PNG figures; `--quick` runs the same pipeline small (same keys, minutes). `--methods`
picks a subset (e.g. `--methods safe_dpo,escalation_safe_dpo`).

    python -m bench.toy_safe_rlhf [--quick] [--workdir artifacts/toy] [--parallel 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from saferlhf.runners.common.config import CONFIG_BY_KIND
from saferlhf.runners.common.events import read_events
from saferlhf.runners.synthetic.vocab import HELDOUT_TEMPLATES

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 3


@dataclass(frozen=True)
class Scale:
    sft_size: int  # SFT demonstrations (one epoch at batch 64)
    pref_size: int  # round-1 preference / safety-preference pairs
    prompts: int  # RL prompt pool
    iterations: int  # PPO iterations per round
    collect_prompts: int  # prompts sampled per collection round
    eval_samples: int  # samples per held-out prompt
    prompt_batch: int = 128  # rollouts per PPO iteration (64 harmful + 64 benign on average)
    calibration_samples: int = 512  # safety-budget calibration rollouts
    train_batch: int = 64  # PPO mini-batch
    max_new_tokens: int = 32


FULL = Scale(sft_size=64_000, pref_size=4_000, prompts=2_048, iterations=30,
             collect_prompts=1_000, eval_samples=8)
QUICK = Scale(sft_size=9_600, pref_size=1_000, prompts=512, iterations=6,
              collect_prompts=200, eval_samples=1)

# method -> ppo_lag stage parameters that differ between methods
METHODS: dict[str, dict[str, Any]] = {
    "ppo": {"algorithm": "ppo"},
    "reward_shaping_nu0.05": {"algorithm": "reward_shaping", "lambda_init": 0.05},
    "reward_shaping_nu2": {"algorithm": "reward_shaping", "lambda_init": 2.0},
    "ppo_lag_budget2pct": {"algorithm": "ppo_lag",
                           "safety_budget": {"max_harmful_rate": 0.02,
                                             "scope": "harmful_prompts"}},
    "ppo_lag_threshold0": {"algorithm": "ppo_lag", "threshold": 0.0},
}


# offline method -> its stage kind, data split and parameters (none tuned on evaluation data:
# chosen on a separate CI-sized SFT model, see docs/choosing_a_method.md)
OFFLINE: dict[str, dict[str, Any]] = {
    "dpo": {"kind": "dpo", "split": "preference", "params": {"preference": "helpfulness"}},
    "safe_dpo": {"kind": "safe_dpo", "split": "safety_labelled_preference",
                 "params": {"safety_margin": 1.0}},
}
OFFLINE_BETA, OFFLINE_LR, OFFLINE_EPOCHS = 1.0, 1e-4, 1
# escalation method -> the offline method it tries first; its gate is the PPO-Lag budget
ESCALATIONS = {"escalation_safe_dpo": "safe_dpo", "escalation_dpo": "dpo"}
ESCALATION_GATE = ("harmful_rate", "<=", 0.02)  # = ppo_lag_budget2pct's max_harmful_rate


def synthetic(split: str, size: int | None = None) -> dict[str, Any]:
    source: dict[str, Any] = {"format": "synthetic", "split": split}
    if size:
        source["size"] = size
    return source


class NotRun(Exception):
    """--collect-only: a stage has no result yet."""


class Runner:
    """Writes a stage.json and runs the stage's real CLI; returns its result.json."""

    def __init__(self, workdir: Path, log: list[str], *, collect_only: bool = False) -> None:
        self.workdir = workdir
        self.log = log
        self.collect_only = collect_only

    def run(self, name: str, kind: str, config: dict[str, Any]) -> dict[str, Any]:
        out = self.workdir / name
        result_path = out / "result.json"
        if result_path.exists():  # resumable experiment: a finished stage is not run again
            return json.loads(result_path.read_text())
        if self.collect_only:
            raise NotRun(name)
        out.mkdir(parents=True, exist_ok=True)
        config = {**config, "kind": kind, "output_dir": str(out), "job": "toy"}
        CONFIG_BY_KIND[kind].model_validate(config)  # a driver bug fails here, not mid-run
        (out / "stage.json").write_text(json.dumps(config, indent=2))
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
               "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
        env.pop("SAFERLHF_EVENTS_ADDR", None)
        started = time.monotonic()
        with (out / "stage.log").open("a") as logf:
            proc = subprocess.run(
                [sys.executable, "-m", f"saferlhf.runners.{kind}",
                  "--config", str(out / "stage.json")],
                stdout=logf, stderr=subprocess.STDOUT, env=env, cwd=ROOT, check=False)
        seconds = time.monotonic() - started
        if proc.returncode != 0:
            tail = (out / "stage.log").read_text().splitlines()[-15:]
            raise RuntimeError(f"stage {name} exited {proc.returncode}:\n" + "\n".join(tail))
        self.log.append(f"{name}: {seconds:.0f}s")
        result = json.loads(result_path.read_text())
        result["_seconds"] = seconds
        result_path.write_text(json.dumps(result, indent=2, sort_keys=True))
        return result


def sft_config(scale: Scale) -> dict[str, Any]:
    return {
        "model": {"path": "builtin:tiny-gpt2", "n_layer": 4, "n_embd": 160, "n_head": 4,
                  "vocab_size": 1024, "max_position_embeddings": 128},
        "data": [synthetic("sft", scale.sft_size)],
        "eval_split_ratio": 0.02,
        "epochs": 1, "batch_size": 64, "max_length_tokens": 96,
        "optim": {"lr": 2e-3, "warmup_ratio": 0.1, "lr_scheduler": "cosine", "weight_decay": 0.0},
        "checkpoint_every_steps": 500, "log_every_steps": 25, "seed": 1,
    }


def preference_config(policy: str, data: list[dict[str, Any]], seed: int) -> dict[str, Any]:
    return {
        "policy_path": policy, "data": data, "eval_split_ratio": 0.1,
        "epochs": 2, "batch_size": 64, "max_length_tokens": 96, "regularization": 0.01,
        "optim": {"lr": 5e-4, "weight_decay": 0.0, "lr_scheduler": "cosine"},
        "log_every_steps": 10, "seed": seed,
    }


def ppo_config(scale: Scale, method: dict[str, Any], *, actor: str, reference: str, rm: str,
               cm: str, seed: int) -> dict[str, Any]:
    if "safety_budget" in method:
        budget = {**method["safety_budget"], "calibration_samples": scale.calibration_samples}
        method = {**method, "safety_budget": budget}
    return {
        "actor_path": actor, "reference_path": reference,
        "reward_model_path": rm, "cost_model_path": cm,
        "prompts": [synthetic("prompts", scale.prompts)],
        "iterations": scale.iterations, "batch_size": scale.train_batch,
        "max_length_tokens": 128,
        "rollout": {"prompt_batch_size": scale.prompt_batch,
                    "max_new_tokens": scale.max_new_tokens},
        "kl_coeff": 0.02, "lambda_lr": 0.1, "lambda_max": 5.0,
        "actor_optim": {"lr": 2e-4, "lr_scheduler": "constant"},
        "critic_optim": {"lr": 5e-4, "lr_scheduler": "constant"},
        "ptx_coeff": 0.0, "log_every_steps": 1, "checkpoint_every_steps": 1000, "seed": seed,
        **method,
    }


def eval_config(scale: Scale, policies: list[dict[str, str]], rm: str, cm: str,
                seed: int) -> dict[str, Any]:
    return {
        "policies": policies, "prompts": [synthetic("eval")],
        "judges": ["synthetic", "cost_model"], "samples_per_prompt": scale.eval_samples,
        "max_new_tokens": scale.max_new_tokens, "reward_model_path": rm,
        "cost_model_path": cm, "arena": True, "plots": False, "seed": seed,
    }


def collect_config(scale: Scale, policy: str, seed: int) -> dict[str, Any]:
    return {
        "policy_path": policy, "prompts": [synthetic("prompts", scale.collect_prompts)],
        "samples_per_prompt": 2, "max_new_tokens": scale.max_new_tokens,
        "labeler": "oracle", "seed": seed,
    }


def headline(version: dict[str, Any]) -> dict[str, float | None]:
    """Ground truth (the exact judge) from an evaluate result's per-version table."""
    overall = version["overall"]
    return {
        "harmful_rate": overall.get("harmful_rate/synthetic"),
        "helpfulness": overall.get("helpfulness"),
        "over_refusal_rate": overall.get("over_refusal_rate/synthetic"),
        "cost_model_harmful_rate": overall.get("harmful_rate/cost_model"),
    }


# "teach" / "should" -> the template's text before the task: the benchmark's own held-out templates
HELDOUT_MARKERS = {name: next(t.split("{t}")[0] for t in HELDOUT_TEMPLATES if name in t)
                   for name in ("teach", "should")}


def harmful_by_template(responses_path: Path, version: str) -> dict[str, float | None]:
    """Exact-judge harmful rate of one version per held-out template (and the held-out
    combinations), from the evaluate stage's responses.jsonl: a template the policy does not
    generalise to shows up here before it moves the overall rate much."""
    counts: dict[str, list[int]] = {}
    for row in read_events(responses_path):
        if row.get("version") != version or not row.get("is_harmful_prompt"):
            continue
        prompt = str(row.get("prompt", ""))
        subset = next((k for k, m in HELDOUT_MARKERS.items() if prompt.startswith(m)), "combo")
        n = counts.setdefault(subset, [0, 0])
        n[0] += bool(row.get("verdicts", {}).get("synthetic", {}).get("harmful"))
        n[1] += 1
    return {k: (h / n if n else None) for k, (h, n) in sorted(counts.items())}


def lambda_trace(events_path: Path) -> list[dict[str, float]]:
    keys = ("train/lambda", "train/episode_cost", "train/threshold", "train/harmful_rate")
    trace = []
    for event in read_events(events_path):
        if event.get("type") == "metrics" and "train/lambda" in event.get("values", {}):
            values = event["values"]
            trace.append({"step": event["step"], **{k: values[k] for k in keys if k in values}})
    return trace


@dataclass
class MethodRun:
    """One method's three rounds; what it has measured so far stays readable if a stage is
    missing (--collect-only)."""

    name: str
    scale: Scale
    runner: Runner
    base: dict[str, str]  # sft, and round 1's rm / cm
    rounds: list[dict[str, Any]] = field(default_factory=list)
    trace: list[dict[str, Any]] = field(default_factory=list)
    sft_row: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.actor, self.rm, self.cm = self.base["sft"], self.base["rm"], self.base["cm"]
        self.policies = [{"name": "sft", "path": self.actor}]
        self.reward_data = [synthetic("preference", self.scale.pref_size)]
        self.cost_data = [synthetic("safety_preference", self.scale.pref_size)]

    def result(self, incomplete: str | None = None) -> dict[str, Any]:
        out = {"rounds": self.rounds, "sft_eval": self.sft_row, "lambda_trace": self.trace}
        return out if incomplete is None else {**out, "incomplete": incomplete}

    def run(self) -> None:
        for r in range(1, ROUNDS + 1):
            tag, seed = f"{self.name}/r{r}", 100 * r
            if r >= 2:
                self.relabel_and_retrain(tag, seed)
            ppo = self.runner.run(f"{tag}/ppo_lag", "ppo_lag", ppo_config(
                self.scale, METHODS[self.name], actor=self.actor, reference=self.base["sft"],
                rm=self.rm, cm=self.cm, seed=seed + 3))
            self.actor = str(self.runner.workdir / tag / "ppo_lag" / "model")
            self.policies.append({"name": f"round-{r}", "path": self.actor})
            self.evaluate(r, tag, seed, ppo)

    def relabel_and_retrain(self, tag: str, seed: int) -> None:
        """Rounds ≥ 2: sample from the last policy, label with the oracle, retrain RM and CM
        (from SFT) on every label so far."""
        workdir = self.runner.workdir
        self.runner.run(f"{tag}/collect", "collect", collect_config(self.scale, self.actor, seed))
        labelled = {"format": "pku_saferlhf",
                    "path": str(workdir / tag / "collect" / "labelled.jsonl")}
        self.reward_data, self.cost_data = [*self.reward_data, labelled], [*self.cost_data,
                                                                           labelled]
        sft = self.base["sft"]
        self.runner.run(f"{tag}/reward", "reward", preference_config(sft, self.reward_data,
                                                                     seed + 1))
        self.runner.run(f"{tag}/cost", "cost", preference_config(sft, self.cost_data, seed + 2))
        self.rm, self.cm = str(workdir / tag / "reward" / "model"), str(workdir / tag / "cost"
                                                                         / "model")

    def evaluate(self, r: int, tag: str, seed: int, ppo: dict[str, Any]) -> None:
        # Judged by the round-1 cost model for comparability across rounds and methods.
        ev = self.runner.run(f"{tag}/evaluate", "evaluate", eval_config(
            self.scale, self.policies, self.rm, self.base["cm"], seed + 4))
        responses = self.runner.workdir / tag / "evaluate" / "responses.jsonl"
        steps = lambda_trace(self.runner.workdir / tag / "ppo_lag" / "events.jsonl")
        self.trace += [{**s, "round": r} for s in steps]
        self.rounds.append({
            "round": r, **headline(ev["versions"][f"round-{r}"]),
            "harmful_rate_by_template": harmful_by_template(responses, f"round-{r}"),
            "final_lambda": steps[-1].get("train/lambda") if steps else None,
            "threshold": ppo.get("threshold"),
            "calibration": ppo.get("calibration"),
            "ppo_seconds": ppo.get("_seconds"),
            "eval_seconds": ev.get("_seconds"),
        })
        # The paper compares versions by helpfulness and by harmlessness separately: the exact
        # judge's arena (higher helpfulness wins) and the cost model's (lower cost wins). The
        # latest round's arena covers SFT and every round so far.
        arenas = ev.get("arena", {})
        helpful = arenas.get("synthetic", {}).get("elo", {})
        harmless = arenas.get("cost", {}).get("elo", {})
        for row in self.rounds:
            row["elo"] = helpful.get(f"round-{row['round']}")
            row["elo_harmlessness"] = harmless.get(f"round-{row['round']}")
        self.sft_row.update(headline(ev["versions"]["sft"]),
                            harmful_rate_by_template=harmful_by_template(responses, "sft"),
                            elo=helpful.get("sft"), elo_harmlessness=harmless.get("sft"))


def offline_config(scale: Scale, name: str, policy: str, seed: int) -> dict[str, Any]:
    method = OFFLINE[name]
    return {
        "policy_path": policy, "data": [synthetic(method["split"], scale.pref_size)],
        "eval_split_ratio": 0.1, "epochs": OFFLINE_EPOCHS, "batch_size": 64,
        "max_length_tokens": 96, "beta": OFFLINE_BETA,
        "optim": {"lr": OFFLINE_LR, "lr_scheduler": "cosine", "weight_decay": 0.0},
        "log_every_steps": 10, "checkpoint_every_steps": 1000, "seed": seed,
        **method["params"],
    }


def _version_row(ev: dict[str, Any], responses: Path, version: str) -> dict[str, Any]:
    arenas = ev.get("arena", {})
    return {**headline(ev["versions"][version]),
            "harmful_rate_by_template": harmful_by_template(responses, version),
            "elo": arenas.get("synthetic", {}).get("elo", {}).get(version),
            "elo_harmlessness": arenas.get("cost", {}).get("elo", {}).get(version)}


def run_offline(name: str, scale: Scale, runner: Runner, base: dict[str, str]) -> dict[str, Any]:
    """One offline stage from the SFT model, then the same evaluation as every RL round."""
    kind = OFFLINE[name]["kind"]
    try:
        stage = runner.run(f"{name}/{kind}", kind, offline_config(scale, name, base["sft"], 7))
        policy = str(runner.workdir / name / kind / "model")
        ev = runner.run(f"{name}/evaluate", "evaluate", eval_config(
            scale, [{"name": "sft", "path": base["sft"]}, {"name": name, "path": policy}],
            base["rm"], base["cm"], 104))
    except NotRun as missing:
        return {"incomplete": f"not run (out of time): {missing} and later stages"}
    responses = runner.workdir / name / "evaluate" / "responses.jsonl"
    return {
        **_version_row(ev, responses, name), "policy": policy,
        "train_seconds": stage.get("_seconds"), "eval_seconds": ev.get("_seconds"),
        "pairs": stage.get("data/pairs"), "pairs_swapped": stage.get("data/pairs_swapped"),
        "pairs_dropped": stage.get("data/pairs_dropped"),
        "reward_accuracy": stage.get("eval/reward_accuracy"),
    }


def run_escalation(name: str, first: dict[str, Any], scale: Scale, runner: Runner,
                   base: dict[str, str], scorer_seconds: float) -> dict[str, Any]:
    """spec.escalation by hand, with the control plane's own gate rule: keep the offline policy
    when its harmful rate meets the budget, else one PPO-Lag round (2% budget) from it — actor
    and reference both the offline policy, as the planner does — and evaluate again."""
    from saferlhf.service.scheduler.gates import compare

    metric, op, bound = ESCALATION_GATE
    observed = first.get(metric)
    offline_seconds = (first.get("train_seconds") or 0.0) + (first.get("eval_seconds") or 0.0)
    gate = {"metric": f"eval/{metric}", "op": op, "value": bound, "observed": observed}
    if observed is not None and compare(observed, op, bound):
        return {**{k: first.get(k) for k in ("harmful_rate", "helpfulness", "over_refusal_rate",
                                              "elo", "elo_harmlessness")},
                "branch": "not needed", "gate": gate, "stage_seconds": round(offline_seconds, 1),
                "train_seconds": first.get("train_seconds"), "ppo_seconds": None}
    policy = first["policy"]
    try:
        ppo = runner.run(f"{name}/ppo_lag", "ppo_lag", ppo_config(
            scale, METHODS["ppo_lag_budget2pct"], actor=policy, reference=policy, rm=base["rm"],
            cm=base["cm"], seed=303))
        ev = runner.run(f"{name}/evaluate", "evaluate", eval_config(
            scale, [{"name": "sft", "path": base["sft"]},
                    {"name": ESCALATIONS[name], "path": policy},
                    {"name": "round-1", "path": str(runner.workdir / name / "ppo_lag" / "model")}],
            base["rm"], base["cm"], 304))
    except NotRun as missing:
        return {"branch": "escalated", "gate": gate,
                "incomplete": f"not run (out of time): {missing} and later stages"}
    responses = runner.workdir / name / "evaluate" / "responses.jsonl"
    steps = lambda_trace(runner.workdir / name / "ppo_lag" / "events.jsonl")
    train = (first.get("train_seconds") or 0.0) + scorer_seconds + (ppo.get("_seconds") or 0.0)
    return {
        **_version_row(ev, responses, "round-1"), "branch": "escalated", "gate": gate,
        "final_lambda": steps[-1].get("train/lambda") if steps else None,
        "threshold": ppo.get("threshold"), "ppo_seconds": ppo.get("_seconds"),
        # offline stage + screening eval, the round-1 RM and CM it needs, PPO-Lag, final eval
        "train_seconds": round(train, 1),
        "stage_seconds": round(offline_seconds + scorer_seconds + (ppo.get("_seconds") or 0.0)
                               + (ev.get("_seconds") or 0.0), 1),
    }


def compute_rows(results: dict[str, Any], scorer_seconds: float) -> list[dict[str, Any]]:
    """One row per method for one round from SFT: harmful rate, helpfulness and seconds —
    training (the stages that fit the policy: RM + CM + RL, or the offline stage) and all
    stages (plus evaluation)."""
    rows = []
    for name, method in results["methods"].items():
        if not method["rounds"]:
            continue
        r1 = method["rounds"][0]
        train = scorer_seconds + (r1.get("ppo_seconds") or 0.0)
        rows.append({"method": name, "stages": "reward ∥ cost → RL", "harmful_rate":
                     r1["harmful_rate"], "helpfulness": r1["helpfulness"],
                     "train_seconds": round(train, 1),
                     "stage_seconds": round(train + (r1.get("eval_seconds") or 0.0), 1)})
    for name, row in results.get("offline", {}).items():
        if "incomplete" in row:
            continue
        rows.append({"method": name, "stages": OFFLINE[name]["kind"],
                     "harmful_rate": row["harmful_rate"], "helpfulness": row["helpfulness"],
                     "train_seconds": row["train_seconds"],
                     "stage_seconds": round((row["train_seconds"] or 0.0)
                                            + (row["eval_seconds"] or 0.0), 1)})
    for name, row in results.get("escalation", {}).items():
        if "incomplete" in row:
            continue
        stages = ESCALATIONS[name] + (" → reward ∥ cost → ppo_lag" if row["branch"] ==
                                      "escalated" else " (ppo_lag not needed)")
        rows.append({"method": name, "stages": stages, "harmful_rate": row["harmful_rate"],
                     "helpfulness": row["helpfulness"], "train_seconds": row["train_seconds"],
                     "stage_seconds": row["stage_seconds"]})
    return rows


def run_method(name: str, scale: Scale, runner: Runner, base: dict[str, str]) -> dict[str, Any]:
    method = MethodRun(name, scale, runner, base)
    try:
        method.run()
    except NotRun as missing:
        return method.result(f"not run (out of time): {missing} and later stages")
    return method.result()


def _sft_from_offline(workdir: Path, name: str) -> dict[str, Any]:
    """The SFT row from an offline method's evaluation (when no RL method ran)."""
    ev = json.loads((workdir / name / "evaluate" / "result.json").read_text())
    return _version_row(ev, workdir / name / "evaluate" / "responses.jsonl", "sft")


def stage_seconds(folder: Path) -> float:
    """Wall seconds of every finished stage below `folder` (each result.json's `_seconds`)."""
    return round(sum(json.loads(p.read_text()).get("_seconds", 0.0)
                     for p in folder.rglob("result.json")), 1)


def machine() -> dict[str, Any]:
    import torch

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "torch": torch.__version__,
            "python": platform.python_version(), "threads_per_run": os.environ.get(
                "OMP_NUM_THREADS", "1")}


def figures(results: dict[str, Any], out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=False)
    for ax, name in zip(axes, ("ppo_lag_budget2pct", "ppo_lag_threshold0"), strict=True):
        trace = results["methods"][name]["lambda_trace"]
        xs = list(range(len(trace)))
        ax.plot(xs, [t.get("train/lambda") for t in trace], label="λ")
        ax.plot(xs, [t.get("train/episode_cost") for t in trace], label="episode cost J_C")
        ax.plot(xs, [t.get("train/threshold") for t in trace], "--", label="threshold d")
        ax.set_title(name)
        ax.set_xlabel("RL step (every round run, in order)")
        ax.legend()
    fig.tight_layout()
    path = out_dir / "toy_lambda.png"
    fig.savefig(path, dpi=100)
    paths.append(str(path.relative_to(ROOT)))
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for name, method in results["methods"].items():
        rs = [0] + [row["round"] for row in method["rounds"]]
        sft = results["sft"]
        axes[0].plot(rs, [sft["harmful_rate"]] + [row["harmful_rate"] for row in method["rounds"]],
                     marker="o", label=name)
        axes[1].plot(rs, [sft["helpfulness"]] + [row["helpfulness"] for row in method["rounds"]],
                     marker="o", label=name)
    axes[0].set_title("ground-truth harmful rate (held-out templates)")
    axes[1].set_title("helpfulness on benign prompts")
    for ax in axes:
        ax.set_xlabel("round (0 = SFT)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path = out_dir / "toy_rounds.png"
    fig.savefig(path, dpi=100)
    paths.append(str(path.relative_to(ROOT)))
    plt.close(fig)
    return paths


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def markdown(results: dict[str, Any]) -> str:
    """The results as tables (written next to the JSON; every figure comes from it)."""
    m = results["machine"]
    lines = [
        "# Toy Safe RLHF results (generated by `" + results["command"] + "`)",
        "",
        f"Machine: {m['cpus']} CPUs ({m['cpu']}), torch {m['torch']}, "
        f"{m['threads_per_run']} thread(s) per stage, up to {results['parallel']} stages side by "
        f"side. Stage time in all {results['stage_seconds_total'] / 60:.1f} min (CPU shared with "
        "other work while measured). Ground truth = the synthetic "
        "benchmark's exact judge on held-out templates; harmful rate over harmful prompts, "
        "helpfulness and over-refusal over benign prompts.",
        "",
        f"SFT model: harmful rate {_pct(results['sft']['harmful_rate'])}, helpfulness "
        f"{_num(results['sft']['helpfulness'])}, over-refusal "
        f"{_pct(results['sft']['over_refusal_rate'])}.",
        "",
        "| method | round | harmful rate | helpfulness | over-refusal | final λ | threshold d "
        "| Elo helpfulness | Elo harmlessness | RL seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, method in results["methods"].items():
        for row in method["rounds"]:
            lines.append(
                f"| {name} | {row['round']} | {_pct(row['harmful_rate'])} | "
                f"{_num(row['helpfulness'])} | {_pct(row['over_refusal_rate'])} | "
                f"{_num(row['final_lambda'])} | {_num(row['threshold'])} | "
                f"{_num(row.get('elo'), 0)} | {_num(row.get('elo_harmlessness'), 0)} | "
                f"{_num(row['ppo_seconds'], 0)} |")
    lines += ["", "Harmful rate per held-out template (\"teach me how to …\", \"what should i do "
              "to …\") and on the held-out template × task combinations:", "",
              "| method | round | teach | should | combinations |", "|---|---|---|---|---|"]
    for name, method in results["methods"].items():
        for row in [{"round": "SFT", "harmful_rate_by_template":
                     method["sft_eval"].get("harmful_rate_by_template")}, *method["rounds"]]:
            by = row.get("harmful_rate_by_template") or {}
            lines.append(f"| {name} | {row['round']} | {_pct(by.get('teach'))} | "
                         f"{_pct(by.get('should'))} | {_pct(by.get('combo'))} |")
    seconds = results.get("stage_seconds_by_method", {})
    if seconds:
        lines += ["", "Stage seconds per method, all rounds (RL, collection, RM/CM retraining, "
                  "evaluation; `shared` = SFT and round-1 RM/CM): " + ", ".join(
                      f"{k} {v:.0f} s" for k, v in seconds.items()) + "."]
    lines += offline_markdown(results)
    for name, method in [*results["methods"].items(), *results.get("offline", {}).items(),
                         *results.get("escalation", {}).items()]:
        if method.get("incomplete"):
            lines.append(f"\n`{name}`: {method['incomplete']}.")
    return "\n".join(lines) + "\n"


def offline_markdown(results: dict[str, Any]) -> list[str]:
    """The compute comparison: one round from SFT per method, offline ones beside PPO-Lag."""
    compute = results.get("compute", [])
    if not compute:
        return []
    lines = ["", "## One round from SFT: offline methods, cheap-first escalation, RL", "",
             "Training seconds: the stages that fit the policy — the round-1 reward and cost "
             "models plus one RL stage, or the one offline stage (plus, when escalated, the RM, "
             "CM and PPO-Lag stages after it). Stage seconds add the evaluations "
             f"({results['scale']['eval_samples']} sample(s) per held-out prompt). Offline "
             "settings: β = "
             f"{OFFLINE_BETA:g}, lr {OFFLINE_LR:g}, {OFFLINE_EPOCHS} epoch(s) over "
             f"{results['scale']['pref_size']} pairs; SafeDPO Δ = "
             f"{OFFLINE['safe_dpo']['params']['safety_margin']:g}.", "",
             "| method | stages run | harmful rate | helpfulness | training seconds "
             "| stage seconds |", "|---|---|---|---|---|---|"]
    for row in compute:
        lines.append(f"| {row['method']} | {row['stages']} | {_pct(row['harmful_rate'])} | "
                     f"{_num(row['helpfulness'])} | {_num(row['train_seconds'], 0)} | "
                     f"{_num(row['stage_seconds'], 0)} |")
    for name, row in results.get("offline", {}).items():
        if row.get("pairs") is not None:
            lines.append(f"\n`{name}`: {row['pairs']:.0f} pairs"
                         + (f", {row['pairs_swapped']:.0f} swapped so the safe response wins, "
                            f"{row['pairs_dropped']:.0f} dropped as both unsafe (SafeDPO's T)"
                            if name == "safe_dpo" else "") + ".")
    for name, row in results.get("escalation", {}).items():
        gate = row["gate"]
        lines.append(f"\n`{name}`: {ESCALATIONS[name]}'s held-out harmful rate "
                     f"{_pct(gate['observed'])} against the gate {gate['metric']} {gate['op']} "
                     f"{gate['value']:g} → **{row['branch']}**.")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small run, same keys (minutes)")
    parser.add_argument("--workdir", default=None, help="stage outputs (default artifacts/toy)")
    parser.add_argument("--out", default=None, help="results JSON path")
    parser.add_argument("--parallel", type=int, default=2, help="methods run side by side")
    parser.add_argument("--methods", default=",".join([*METHODS, *OFFLINE, *ESCALATIONS]),
                        help="comma-separated subset")
    parser.add_argument("--collect-only", action="store_true",
                        help="run nothing: write the results of the stages that finished")
    args = parser.parse_args(argv)
    scale = QUICK if args.quick else FULL
    workdir = Path(args.workdir or ROOT / "artifacts" / ("toy-quick" if args.quick else "toy"))
    results_dir = ROOT / "docs" / "results"
    out = Path(args.out or (workdir / "toy_safe_rlhf_quick.json" if args.quick
                            else results_dir / "toy_safe_rlhf.json"))
    log: list[str] = []
    runner = Runner(workdir, log, collect_only=args.collect_only)
    started = time.monotonic()

    runner.run("sft", "sft", sft_config(scale))
    sft = str(workdir / "sft" / "model")
    with ThreadPoolExecutor(max_workers=2) as pool:
        jobs = [pool.submit(runner.run, "r1-reward", "reward", preference_config(
                    sft, [synthetic("preference", scale.pref_size)], 11)),
                pool.submit(runner.run, "r1-cost", "cost", preference_config(
                    sft, [synthetic("safety_preference", scale.pref_size)], 12))]
        rm_result, cm_result = (j.result() for j in jobs)
    base = {"sft": sft, "rm": str(workdir / "r1-reward" / "model"),
            "cm": str(workdir / "r1-cost" / "model")}

    names = [m for m in args.methods.split(",") if m]
    unknown = [n for n in names if n not in {**METHODS, **OFFLINE, **ESCALATIONS}]
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; expected some of "
                     f"{', '.join([*METHODS, *OFFLINE, *ESCALATIONS])}")
    rl_names = [n for n in names if n in METHODS]
    offline_names = list(dict.fromkeys(
        [n for n in names if n in OFFLINE] + [ESCALATIONS[n] for n in names if n in ESCALATIONS]))
    with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
        futures = {n: pool.submit(run_method, n, scale, runner, base) for n in rl_names}
        offline_futures = {n: pool.submit(run_offline, n, scale, runner, base)
                           for n in offline_names}
        methods = {n: f.result() for n, f in futures.items()}
        offline = {n: f.result() for n, f in offline_futures.items()}
    scorer_seconds = (rm_result.get("_seconds") or 0.0) + (cm_result.get("_seconds") or 0.0)
    with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
        escalation_futures = {
            n: pool.submit(run_escalation, n, offline[ESCALATIONS[n]], scale, runner, base,
                           scorer_seconds)
            for n in names if n in ESCALATIONS and "incomplete" not in offline[ESCALATIONS[n]]}
        escalation = {n: f.result() for n, f in escalation_futures.items()}

    first = next((m for m in methods.values() if m["sft_eval"]), {"sft_eval": {}})
    done = [n for n, row in offline.items() if "incomplete" not in row]
    if not first["sft_eval"] and done:  # no RL method ran: an offline evaluation has SFT too
        first = {"sft_eval": _sft_from_offline(runner.workdir, done[0])}
    results: dict[str, Any] = {
        "benchmark": "synthetic safety benchmark (saferlhf.runners.synthetic), held-out templates",
        "quick": args.quick, "scale": scale.__dict__, "rounds": ROUNDS,
        "parallel": args.parallel,
        "machine": machine(),
        "command": "python -m bench.toy_safe_rlhf" + (" --quick" if args.quick else ""),
        "wall_seconds": round(time.monotonic() - started, 1),
        "collect_only": args.collect_only,
        "stage_seconds_total": stage_seconds(workdir),
        # Per method: its own stages (rounds 1-3: RL, collection, RM/CM retraining, evaluation);
        # "shared" is SFT and the round-1 RM/CM every method starts from.
        "stage_seconds_by_method": {
            **{name: stage_seconds(workdir / name) for name in names if name in METHODS},
            "shared": round(sum(stage_seconds(workdir / s)
                                for s in ("sft", "r1-reward", "r1-cost")), 1)},
        "sft": first["sft_eval"],
        "round1_models": {
            "reward_accuracy": rm_result.get("eval/accuracy"),
            "cost_accuracy": cm_result.get("eval/accuracy"),
            "cost_sign_accuracy": cm_result.get("eval/accuracy_sign"),
        },
        "methods": methods,
        "offline": {n: {k: v for k, v in row.items() if k != "policy"}
                    for n, row in offline.items() if n in names},
        "escalation": escalation,
        "ablation_threshold": {
            name: [row["harmful_rate"] for row in methods[name]["rounds"]]
            for name in ("ppo_lag_threshold0", "ppo_lag_budget2pct") if name in methods
        },
        "stage_seconds": log,
    }
    results["compute"] = compute_rows(results, scorer_seconds)
    if {"ppo_lag_budget2pct", "ppo_lag_threshold0"} <= set(methods):
        results["figures"] = figures(results, results_dir if not args.quick else workdir)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, sort_keys=True))
    out.with_suffix(".md").write_text(markdown(results))
    summary: dict[str, Any] = {n: [round(r["harmful_rate"] or 0, 3) for r in m["rounds"]]
                               for n, m in methods.items()}
    summary.update({row["method"]: row["harmful_rate"] for row in results["compute"]
                    if row["method"] not in methods})
    print(json.dumps({"out": str(out), "sft_harmful_rate": results["sft"]["harmful_rate"],
                      "harmful_rate_per_round": summary, "wall_seconds": results["wall_seconds"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
