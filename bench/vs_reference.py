"""PPO-Lagrangian iteration time, ours vs the reference implementation, side by side (issue 12).
Prints ONE JSON line.

    python -m bench.vs_reference [--configs gpt2,llama] [--pairs 5] [--iterations 3]
                                 [--rows fp32,bf16|all] [--out docs/results/vs_reference.json]

What is compared: one iteration (rollout of a prompt batch, then the PPO-Lag updates) of
- **reference**: `bench/reference_ppo_lag.py`, a description-level model of the reference's
  iteration as the reference structures it (HF `generate(..., synced_gpus=True)`, six separate
  no-grad forward passes, unfused per-tensor AdamW, no reuse, its Python GAE loop; its docstring
  says exactly what it models, and why it errs on the fast side);
- **ours**: the project's `PPOLagTrainer.run_iteration` with the stage defaults (the fast, safe
  settings: fused AdamW, reuse of the rollout's actor/critic forwards by the first update, the
  static-cache decode loop, response-only logits; builtin GPT-2 with the fused tanh GELU).

Both sides load the same model folders (actor = reference policy, reward and cost models, critics
initialised from them), draw the same prompts and use the same `PPOLagConfig` hyperparameters.
The policy's `generation_config.json` sets `min_new_tokens = max_new_tokens`, so every response
is exactly `max_new_tokens` tokens on both sides: the sampled-token counts are equal by
construction (checked, and reported per side).

Method: for each config, `--pairs` A/B pairs, each side in a fresh process (order alternating
within pairs: AB, BA, …), one thread (`OMP_NUM_THREADS=1`), one warm-up iteration then
`--iterations` measured ones. Reported per side: the median over pairs of the per-iteration mean
wall seconds, per-phase medians (generate, score, reference_log_probs, values, actor, critics;
`other` = the rest: shaping, GAE, λ, metrics), the same in CPU seconds (less sensitive to other
processes on a shared machine), and `ratio = reference / ours` (medians of wall seconds; also the
median of the per-pair ratios). The ratio is fp32 on both sides; `bf16` is a separate row (ours
with `precision: bf16` against ours in fp32 and the fp32 reference, never mixed into the ratio),
`compile` another (ours with `rollout.compile: true`; its one-off compile seconds are reported).
The `without_*` rows (`--rows all`) are ours with one speed-up turned off each, interleaved in
the same pairs: `gain_of_the_speed_up` = that row's time / ours. `without_fused_gelu` (GPT-2
only) runs the same weights with `activation_function: gelu_new`. Rows cost a process per pair
each: `--rows all --pairs 5` on both configs took 17.5 minutes on the 2-core build machine.

Configs: `gpt2` — builtin GPT-2, 4 layers, width 256, 4 heads, vocab 1000, 128 positions;
`llama` — bench/ppo_step.py's LLaMA (same sizes). Batch 8 prompts, 64 new tokens, one PPO epoch,
one micro-batch per iteration. `gpt2-quick` (2 layers, width 64, 16 tokens) is the CI smoke run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("generate", "score", "reference_log_probs", "values", "actor", "critics")
CONFIGS: dict[str, dict[str, Any]] = {  # model sizes, and the response length
    "gpt2": {"model": {"kind": "builtin:tiny-gpt2", "n_layer": 4, "n_embd": 256, "n_head": 4,
                       "vocab_size": 1000, "context": 128}, "new_tokens": 64},
    "llama": {"model": {"kind": "builtin:tiny-llama", "n_layer": 4, "n_embd": 256, "n_head": 4,
                        "vocab_size": 1000, "context": 128}, "new_tokens": 64},
    # CI-sized (tests/integration/test_vs_reference_bench.py): a smoke run, not a figure
    "gpt2-quick": {"model": {"kind": "builtin:tiny-gpt2", "n_layer": 2, "n_embd": 64,
                             "n_head": 2, "vocab_size": 400, "context": 64}, "new_tokens": 16},
}
BATCH = 8
# ours per row: stage-config overrides on top of the defaults. `fp32` is the ratio's; `bf16` and
# `compile` are extra settings; the `without_*` rows turn one speed-up off each (before/after in
# the same run); `without_fused_gelu` runs on copies of the models with GPT-2's `gelu_new`.
ROWS: dict[str, dict[str, Any]] = {
    "fp32": {},
    "bf16": {"backend": {"precision": "bf16"}},
    "compile": {"rollout": {"compile": True}},
    "without_reuse": {"reuse_rollout_forward": False},
    "without_fast_decode": {"rollout": {"decode": "hf"}},
    "without_fused_adamw": {"actor_optim": {"implementation": "for_loop"},
                            "critic_optim": {"implementation": "for_loop"}},
    "without_fused_gelu": {},
}
ABLATIONS = [r for r in ROWS if r.startswith("without_")]
DEFAULT_ROWS = "fp32,bf16"


class DualTimer:
    """PhaseTimer's interface, recording wall and CPU seconds per phase."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def __call__(self, name: str):
        import contextlib

        @contextlib.contextmanager
        def phase():
            w, c = time.perf_counter(), time.process_time()
            try:
                yield
            finally:
                self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - w
                self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - c
        return phase()

    def reset(self) -> None:
        self.wall.clear()
        self.cpu.clear()

    @property
    def totals(self) -> dict[str, float]:  # PhaseTimer compatibility
        return self.wall


# --- the shared inputs ------------------------------------------------------------------------


def build_inputs(config: str, workdir: Path) -> dict[str, str]:
    """Policy, reward and cost model folders for `config`; responses forced to its length."""
    from saferlhf.runners.ppo_lag.tiny import build_tiny_policy, build_tiny_score_model
    from transformers import GenerationConfig

    folder = workdir / config
    policy = build_tiny_policy(folder / "policy", **CONFIGS[config]["model"])
    generation = GenerationConfig.from_pretrained(str(policy))
    generation.min_new_tokens = CONFIGS[config]["new_tokens"]  # equal counts on both sides
    generation.save_pretrained(str(policy))
    rm = build_tiny_score_model(folder / "rm", policy, "reward", seed=1)
    cm = build_tiny_score_model(folder / "cm", policy, "cost", seed=2)
    inputs = {"config": config, "policy": str(policy), "rm": str(rm), "cm": str(cm)}
    if CONFIGS[config]["model"]["kind"] == "builtin:tiny-gpt2":  # same weights, `gelu_new`
        inputs["gelu_new"] = json.dumps(_with_activation(inputs, folder / "gelu_new", "gelu_new"))
    return inputs


def _with_activation(inputs: dict[str, str], root: Path, activation: str) -> dict[str, str]:
    """Copies of the model folders whose GPT-2 config names another activation function."""
    import shutil

    out = {"config": inputs["config"]}
    for name in ("policy", "rm", "cm"):
        target = root / name
        shutil.copytree(inputs[name], target)
        config = json.loads((target / "config.json").read_text())
        config["activation_function"] = activation
        (target / "config.json").write_text(json.dumps(config, indent=2))
        out[name] = str(target)
    return out


def stage_config(inputs: dict[str, str], out: Path, iterations: int, overrides: dict[str, Any]):
    from saferlhf.runners.ppo_lag.tiny import tiny_stage_config

    config = CONFIGS[inputs["config"]]
    new_tokens = config["new_tokens"]
    raw: dict[str, Any] = dict(
        reward_source="model", reward_model_path=inputs["rm"], cost_model_path=inputs["cm"],
        iterations=iterations, batch_size=BATCH,
        rollout={"prompt_batch_size": BATCH, "max_new_tokens": new_tokens},
        max_length_tokens=config["model"]["context"] - new_tokens,
        checkpoint_every_steps=100_000,
    )
    for key, value in overrides.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return tiny_stage_config(inputs["policy"], out, **raw)


# --- one side, in a child process -------------------------------------------------------------


def measure(side: str, row: str, inputs: dict[str, str], iterations: int) -> dict[str, Any]:
    import torch
    from saferlhf.runners.common.checkpoint import StopSignal, seed_everything
    from saferlhf.runners.common.events import EventSink
    from saferlhf.runners.common.train_setup import init_stage_distributed
    from saferlhf.runners.ppo_lag.setup import iteration_prompts, load_prompt_rows, make_schedule
    from saferlhf.runners.ppo_lag.trainer import PPOLagTrainer

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    warmup = 1
    if row == "without_fused_gelu":
        inputs = json.loads(inputs["gelu_new"])
    with tempfile.TemporaryDirectory() as tmp:
        cfg = stage_config(inputs, Path(tmp) / "out", warmup + iterations,
                           ROWS[row] if side == "ours" else {})
        timer = DualTimer()
        seed_everything(cfg.seed)
        if side == "ours":
            trainer = PPOLagTrainer(cfg, EventSink(cfg.output_dir),
                                    init_stage_distributed(cfg, None), timer=timer)
            trainer.setup()
            trainer.stop = StopSignal()
            sampled = _count_sampled_tokens()

            def one() -> float:
                trainer.run_iteration()
                trainer.state.iteration += 1
                return trainer.state.last_metrics["train/mean_generated_length"]
        else:
            _one_process_group()
            from transformers import AutoTokenizer

            from bench.reference_ppo_lag import ReferenceIteration

            tokenizer = AutoTokenizer.from_pretrained(cfg.actor_path)
            rows = load_prompt_rows(cfg.prompts, tokenizer.eos_token, cfg.seed)
            schedule = make_schedule(cfg, len(rows), 1)
            ref = ReferenceIteration(cfg, schedule.total_steps(cfg.update_iters), timer)
            state = {"iteration": 0}

            def one() -> float:
                batch = iteration_prompts(rows, state["iteration"], schedule, seed=cfg.seed,
                                          rank=0, world_size=1,
                                          prompt_batch_size=cfg.rollout.prompt_batch_size)
                state["iteration"] += 1
                return ref.iteration([r.text for r in batch])["train/mean_generated_length"]
        start = time.perf_counter()
        one()
        warmup_seconds = time.perf_counter() - start
        timer.reset()
        lengths = []
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(iterations):
            lengths.append(one())
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    out: dict[str, Any] = {
        "iteration_seconds": wall / iterations, "iteration_cpu_seconds": cpu / iterations,
        "phases": {k: timer.wall.get(k, 0.0) / iterations for k in PHASES},
        "phases_cpu": {k: timer.cpu.get(k, 0.0) / iterations for k in PHASES},
        "warmup_iteration_seconds": warmup_seconds,
        "sampled_tokens_per_iteration": BATCH * CONFIGS[inputs["config"]]["new_tokens"],
        "counted_response_tokens_per_iteration": statistics.mean(lengths) * BATCH,
    }
    if side == "reference":
        out["sampled_tokens_per_iteration"] = ref.sampled_tokens // (warmup + iterations)
    else:
        out["sampled_tokens_per_iteration"] = sampled["tokens"] // (warmup + iterations)
        out["decode_compile_seconds"] = _compile_seconds()
    return out


def _count_sampled_tokens() -> dict[str, int]:
    """Count the response columns our rollouts sample (wraps the trainer's collect_experience;
    behaviour unchanged)."""
    from saferlhf.runners.ppo_lag import trainer as trainer_module

    counts = {"tokens": 0}
    collect = trainer_module.collect_experience

    def counting(**kwargs):
        exp = collect(**kwargs)
        counts["tokens"] += exp.sequences.shape[0] * (exp.sequences.shape[1] - exp.prompt_width)
        return exp
    trainer_module.collect_experience = counting
    return counts


def _compile_seconds() -> float | None:
    try:
        from saferlhf.runners.common.fast_decode import compile_seconds
    except ImportError:
        return None
    return compile_seconds()


def _one_process_group() -> None:
    """synced_gpus needs torch.distributed: a one-process gloo group, as a 1-GPU run has."""
    import torch.distributed as dist
    from saferlhf.runners.common.dist import free_port

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), RANK="0",
                      WORLD_SIZE="1", LOCAL_RANK="0")
    dist.init_process_group("gloo", rank=0, world_size=1)


def run_child(side: str, row: str, inputs: dict[str, str], iterations: int) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "bench.vs_reference", "--child", side, "--row", row,
           "--inputs", json.dumps(inputs), "--iterations", str(iterations)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=1800)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{side}/{row} child exited {proc.returncode}: "
                           f"{proc.stderr.strip()[-1500:]}")
    return json.loads(lines[-1])


# --- aggregation ------------------------------------------------------------------------------


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the pairs of one side's per-process figures."""
    def med(values: list[float]) -> float:
        return round(statistics.median(values), 4)

    out: dict[str, Any] = {
        "iteration_seconds": med([r["iteration_seconds"] for r in runs]),
        "iteration_cpu_seconds": med([r["iteration_cpu_seconds"] for r in runs]),
        "iteration_seconds_min_max": [round(min(r["iteration_seconds"] for r in runs), 4),
                                      round(max(r["iteration_seconds"] for r in runs), 4)],
        "phases": {k: med([r["phases"][k] for r in runs]) for k in PHASES},
        "phases_cpu": {k: med([r["phases_cpu"][k] for r in runs]) for k in PHASES},
        "warmup_iteration_seconds": med([r["warmup_iteration_seconds"] for r in runs]),
        "sampled_tokens_per_iteration": sorted({r["sampled_tokens_per_iteration"]
                                                for r in runs}),
        "counted_response_tokens_per_iteration": med(
            [r["counted_response_tokens_per_iteration"] for r in runs]),
    }
    # the rest of each run's iteration (shaping, GAE, λ, metrics), then its median
    out["phases"]["other"] = med([r["iteration_seconds"] - sum(r["phases"].values())
                                  for r in runs])
    out["phases_cpu"]["other"] = med([r["iteration_cpu_seconds"] - sum(r["phases_cpu"].values())
                                      for r in runs])
    compile_seconds = [r["decode_compile_seconds"] for r in runs
                       if r.get("decode_compile_seconds") is not None]
    if compile_seconds:
        out["decode_compile_seconds"] = med(compile_seconds)
    return out


def compare(config: str, inputs: dict[str, str], pairs: int, iterations: int,
            rows: list[str]) -> dict[str, Any]:
    """Interleaved pairs: reference vs ours (fp32), then each extra row of ours vs ours fp32."""
    if "gelu_new" not in inputs:  # not a GPT-2 config: no activation to compare
        rows = [r for r in rows if r != "without_fused_gelu"]
    sides = ["reference", *(f"ours:{r}" for r in ["fp32", *[r for r in rows if r != "fp32"]])]
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in sides}
    for i in range(pairs):
        order = sides if i % 2 == 0 else sides[::-1]
        for side in order:
            name, _, row = side.partition(":")
            runs[side].append(run_child(name, row or "fp32", inputs, iterations))
    ref, ours = summarise(runs["reference"]), summarise(runs["ours:fp32"])
    pair_ratios = [r["iteration_seconds"] / o["iteration_seconds"]
                   for r, o in zip(runs["reference"], runs["ours:fp32"], strict=True)]
    result: dict[str, Any] = {
        "model": CONFIGS[config]["model"], "max_new_tokens": CONFIGS[config]["new_tokens"],
        "ratio": round(ref["iteration_seconds"] / ours["iteration_seconds"], 3),
        "ratio_cpu": round(ref["iteration_cpu_seconds"] / ours["iteration_cpu_seconds"], 3),
        "ratio_median_of_pairs": round(statistics.median(pair_ratios), 3),
        "ratio_per_phase": {k: round(ref["phases"][k] / ours["phases"][k], 3)
                            if ours["phases"][k] > 0 else None for k in ref["phases"]},
        "reference": ref, "ours": ours,
        "same_sampled_tokens": ref["sampled_tokens_per_iteration"]
        == ours["sampled_tokens_per_iteration"],
    }
    for row in rows:
        if row == "fp32":
            continue
        figures = summarise(runs[f"ours:{row}"])
        if row in ABLATIONS:  # what turning this one speed-up on gains, in the same run
            figures["gain_of_the_speed_up"] = round(
                figures["iteration_seconds"] / ours["iteration_seconds"], 3)
            figures["gain_of_the_speed_up_cpu"] = round(
                figures["iteration_cpu_seconds"] / ours["iteration_cpu_seconds"], 3)
        else:
            figures["speedup_vs_ours_fp32"] = round(
                ours["iteration_seconds"] / figures["iteration_seconds"], 3)
            figures["speedup_vs_reference_fp32_not_the_ratio"] = round(
                ref["iteration_seconds"] / figures["iteration_seconds"], 3)
        result[f"ours_{row}"] = figures
    return result


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    flags = next((line.split(":", 1)[1].split() for line in
                  Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), [])
    import torch

    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "platform": platform.platform(),
            "amx": any(f.startswith("amx") for f in flags), "avx512_bf16": "avx512_bf16" in flags,
            "threads": int(os.environ.get("OMP_NUM_THREADS", "1"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="gpt2,llama")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=3, help="measured per process")
    parser.add_argument("--rows", default=DEFAULT_ROWS,
                        help=f"comma-separated: {', '.join(ROWS)}; `all` = every row "
                        f"(default {DEFAULT_ROWS}; fp32 is always measured: it is the ratio's)")
    parser.add_argument("--out", help="also write the JSON line here")
    parser.add_argument("--render", metavar="JSON",
                        help="only rewrite the markdown table beside a JSON this bench wrote")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--row", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--inputs", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    import logging

    logging.disable(logging.WARNING)
    if args.child:
        print(json.dumps(measure(args.child, args.row, json.loads(args.inputs),
                                 args.iterations)))
        return 0
    if args.render:
        source = Path(args.render)
        source.with_suffix(".md").write_text(markdown(json.loads(source.read_text())))
        return 0
    rows = list(ROWS) if args.rows == "all" else [r for r in args.rows.split(",") if r]
    configs = [c for c in args.configs.split(",") if c]
    if any(r not in ROWS for r in rows):
        parser.error(f"--rows: expected some of {', '.join(ROWS)} (or all), got {args.rows}")
    if not configs or any(c not in CONFIGS for c in configs):
        parser.error(f"--configs: expected some of {', '.join(CONFIGS)}, got {args.configs}")
    if args.pairs < 1 or args.iterations < 1:
        parser.error("--pairs and --iterations must be at least 1")
    load_start = os.getloadavg()[0]
    started = time.time()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="saferlhf-vsref-") as tmp:
        for config in configs:
            inputs = build_inputs(config, Path(tmp))
            results[config] = compare(config, inputs, args.pairs, args.iterations, rows)
    line = json.dumps({
        "command": "python -m bench.vs_reference " + " ".join(argv if argv is not None
                                                               else sys.argv[1:]),
        "ratio": {c: r["ratio"] for c, r in results.items()},
        "target_ratio": 1.5,
        "configs": results,
        "settings": {"batch": BATCH, "update_iters": 1,
                     "pairs": args.pairs, "measured_iterations_per_process": args.iterations,
                     "warmup_iterations_per_process": 1},
        "gpu": {"status": "not measured", "reason": "no GPU on the build machines"},
        "machine": machine(),
        "load_average_1min": {"start": round(load_start, 2),
                              "end": round(os.getloadavg()[0], 2)},
        "wall_seconds": round(time.time() - started, 1),
    })
    print(line)
    if args.out:
        Path(args.out).write_text(line + "\n")
        Path(args.out).with_suffix(".md").write_text(markdown(json.loads(line)))
    return 0


def markdown(figures: dict[str, Any]) -> str:
    """The figures as tables (written beside the JSON by --out; nothing typed by hand)."""
    m, load = figures["machine"], figures["load_average_1min"]
    out = ["# PPO-Lag iteration: ours vs the reference (bench/vs_reference.py)", "",
           f"Written by `{figures['command'].strip()}` — {m['cpu']}, {m['cores']} cores, "
           f"{m['threads']} thread, torch {m['torch']}, AMX {m['amx']}, AVX-512 BF16 "
           f"{m['avx512_bf16']}; load average {load['start']} at start, {load['end']} at end; "
           f"{figures['settings']['pairs']} interleaved pairs of fresh processes, "
           f"{figures['settings']['measured_iterations_per_process']} measured iterations each "
           f"after one warm-up; medians of wall seconds per iteration. GPU: not measured (none "
           "on the build machines).", ""]
    phases = [*PHASES, "other"]
    for config, run in figures["configs"].items():
        model = run["model"]
        out += [f"## {config}: {model['kind']}, {model['n_layer']} layers, width "
                f"{model['n_embd']}, batch {BATCH}, {run['max_new_tokens']} new tokens", "",
                f"**ratio (fp32, reference / ours): {run['ratio']}** (CPU seconds: "
                f"{run['ratio_cpu']}; median of per-pair ratios: {run['ratio_median_of_pairs']};"
                f" target {figures['target_ratio']}); sampled tokens per iteration equal on "
                f"both sides: {run['same_sampled_tokens']} "
                f"({run['ours']['sampled_tokens_per_iteration']}).", "",
                "| side | s / iteration | CPU s | " + " | ".join(phases) + " | compared |",
                "|---" * (len(phases) + 4) + "|"]
        sides = [("reference (fp32)", run["reference"]), ("ours (fp32)", run["ours"])]
        sides += [(f"ours {k.removeprefix('ours_')}", v) for k, v in run.items()
                  if k.startswith("ours_")]
        for name, side in sides:
            gain = ""
            if "gain_of_the_speed_up" in side:  # an ablation: ours with one speed-up off
                gain = (f"{side['gain_of_the_speed_up']}× ours' time "
                        f"({side['gain_of_the_speed_up_cpu']}× in CPU seconds)")
            elif "speedup_vs_ours_fp32" in side:
                gain = (f"{side['speedup_vs_ours_fp32']}× faster than ours fp32; "
                        f"{side['speedup_vs_reference_fp32_not_the_ratio']}× the fp32 "
                        "reference's speed (not the ratio)")
            out.append(f"| {name} | {side['iteration_seconds']} | "
                       f"{side['iteration_cpu_seconds']} | "
                       + " | ".join(str(side["phases"][p]) for p in phases) + f" | {gain} |")
        compiled = run.get("ours_compile", {}).get("decode_compile_seconds")
        if compiled is not None:
            out += ["", f"`rollout.compile`: {compiled} s one-off compile per process (in the "
                    "warm-up iteration, not in the figures above; torch's on-disk compile cache "
                    "shortens it after the first process on a machine)."]
        out += ["", "`without_*` rows: ours with that one speed-up turned off, interleaved in "
                "the same pairs (their time / ours: above 1 = the speed-up helps)."]
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
