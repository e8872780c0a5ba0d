"""Trainable parameters and peak memory with and without LoRA (issue 10, part 4). Prints ONE JSON
line.

    python -m bench.lora [--quick] [--stages sft,ppo_lag] [--sizes tiny,bigger] [--out FILE]

Each (stage, model size, full | lora) row runs in a fresh process through the stage's own code:
`saferlhf.runners.sft.train.run` (4 optimizer steps of 8 sequences), or `PPOLagTrainer.run` with a
reward and a cost model (6 networks; 2 iterations of 8 prompts). The LoRA rows put r = 8 adapters
on the policy's projections (and, for PPO-Lag, on both critics too, `critic_lora`); the PPO
reference is then the actor's adapter-disabled base instead of a second copy. Models are built from
config (GPT-2 architecture, BPE vocabulary trained on the synthetic benchmark): `tiny` is the
builtin default (4 layers × 160), `bigger` a GPT-2-small body (12 layers × 768, ~86 M
parameters with the small vocabulary).

Memory, and why these measures: torch has no statistics for its CPU allocator (`torch.cpu` has no
`memory_allocated`), and tracemalloc sees only the Python heap — not tensor storage, which c10
allocates itself (a 190 MiB tensor shows up as 0 MiB there). So every row reports

- peak_rss_mib: the process's peak resident set (VmHWM in /proc/self/status), which holds every
  weight, gradient, optimizer state and activation of the run, and the rest of the process;
- peak_rss_above_start_mib: that peak minus the resident set just before the stage starts (after
  the imports), i.e. what the stage itself added;
- optimizer_state_mib: the bytes of every optimizer's state tensors (AdamW's m and v), read from
  the optimizers after each step (a global torch step hook), maximum over the run — exact, with
  no allocator noise;
- weights_mib: the bytes of every distinct weight tensor the stage holds (all six PPO-Lag
  networks, or five when the reference is the actor's adapter-disabled base);
- trainable_parameters / parameters: per trained network and in all, counted on the live models.

Peak RSS also holds what does not shrink with LoRA (the interpreter and libraries, data,
tokenizer training, transient copies while loading weights), so its ratio is far from the
optimizer-state ratio; at the tiny size it is all overhead.

Everything printed is measured; the load average is recorded so the figures can be rerun on a
quiet machine. No GPU on the build machines: the GPU row says "not measured".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SIZES = {
    "tiny": {"n_layer": 4, "n_embd": 160, "n_head": 4, "vocab_size": 1024, "context": 128},
    "bigger": {"n_layer": 12, "n_embd": 768, "n_head": 12, "vocab_size": 1024, "context": 128},
}
QUICK_SIZES = {
    "tiny": {"n_layer": 2, "n_embd": 32, "n_head": 2, "vocab_size": 320, "context": 96},
    "bigger": {"n_layer": 2, "n_embd": 64, "n_head": 2, "vocab_size": 320, "context": 96},
}
LORA = {"r": 8, "alpha": 16, "dropout": 0.05}


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


class OptimizerBytes:
    """Largest total of optimizer state bytes seen after any step, over every optimizer."""

    def __init__(self) -> None:
        import torch.optim.optimizer as opt

        self.per_optimizer: dict[int, int] = {}
        self.peak = 0
        opt.register_optimizer_step_post_hook(self._after_step)

    def _after_step(self, optimizer, args, kwargs) -> None:  # noqa: ARG002
        import torch

        self.per_optimizer[id(optimizer)] = sum(
            t.numel() * t.element_size() for state in optimizer.state.values()
            for t in state.values() if isinstance(t, torch.Tensor))
        self.peak = max(self.peak, sum(self.per_optimizer.values()))


def _weights_mib(*modules) -> float:
    """Bytes of every distinct parameter and buffer storage held by `modules` (shared once)."""
    seen: dict[int, int] = {}
    for module in modules:
        for t in [*module.parameters(), *module.buffers()]:
            seen.setdefault(t.data_ptr(), t.numel() * t.element_size())
    return round(sum(seen.values()) / 2**20, 2)


def _counts(model) -> dict[str, int]:
    from saferlhf.runners.common.lora import parameter_counts

    trainable, total = parameter_counts(model)
    return {"trainable_parameters": trainable, "parameters": total}


def run_sft(size: dict, lora: bool, workdir: Path, models: Path) -> dict[str, Any]:  # noqa: ARG001
    from saferlhf.runners.common.config import SFTConfig
    from saferlhf.runners.sft.train import run

    cfg = SFTConfig.model_validate({
        "kind": "sft", "output_dir": str(workdir / "sft"), "seed": 1,
        "model": {"path": "builtin:tiny-gpt2", "n_layer": size["n_layer"],
                  "n_embd": size["n_embd"], "n_head": size["n_head"],
                  "vocab_size": size["vocab_size"], "max_position_embeddings": size["context"]},
        "data": [{"format": "synthetic", "split": "sft", "size": 256}],
        "batch_size": 8, "max_steps": 4, "max_length_tokens": 96, "log_every_steps": 4,
        "checkpoint_every_steps": 1000, "optim": {"lr": 1e-3},
        "lora": LORA if lora else None,
    })
    start = time.perf_counter()
    run(cfg)
    seconds = time.perf_counter() - start
    peak_kib = _status_kib("VmHWM")  # before the counting below loads the model once more
    from saferlhf.runners.common.models import load_policy

    model, _ = load_policy(workdir / "sft" / ("base" if lora else "model"))
    if lora:
        from saferlhf.runners.common.lora import add_lora

        model = add_lora(model, cfg.lora, field="lora")
    return {"stage_seconds": round(seconds, 2), "networks": {"policy": _counts(model)},
            "weights_mib": _weights_mib(model), "peak_kib": peak_kib}


def build_ppo_inputs(size: dict, models: Path) -> None:
    """Policy, reward and cost model folders for the PPO-Lag rows (built by the parent, so the
    rows measure the stage, not the building)."""
    from saferlhf.runners.ppo_lag.tiny import build_tiny_policy, build_tiny_score_model

    policy = build_tiny_policy(models / "policy", **size)
    build_tiny_score_model(models / "rm", policy, "reward", seed=1)
    build_tiny_score_model(models / "cm", policy, "cost", seed=2)


def run_ppo_lag(size: dict, lora: bool, workdir: Path, models: Path) -> dict[str, Any]:
    from saferlhf.runners.common.events import EventSink
    from saferlhf.runners.common.train_setup import init_stage_distributed
    from saferlhf.runners.ppo_lag.tiny import tiny_stage_config
    from saferlhf.runners.ppo_lag.trainer import PPOLagTrainer

    policy, rm, cm = models / "policy", models / "rm", models / "cm"
    extra = {"lora": LORA, "critic_lora": LORA} if lora else {}
    cfg = tiny_stage_config(
        policy, workdir / "ppo", reward_source="model", reward_model_path=str(rm),
        cost_model_path=str(cm), iterations=2, batch_size=8, max_length_tokens=64,
        rollout={"prompt_batch_size": 8, "max_new_tokens": 32}, checkpoint_every_steps=100000,
        **extra)
    dist = init_stage_distributed(cfg, None)
    trainer = PPOLagTrainer(cfg, EventSink(cfg.output_dir), dist)
    start = time.perf_counter()
    trainer.run()
    seconds = time.perf_counter() - start
    peak_kib = _status_kib("VmHWM")
    nets = trainer.nets
    networks = {"actor": _counts(nets.actor.bare), "reward_critic": _counts(
        nets.reward_critic.bare), "cost_critic": _counts(nets.cost_critic.bare)}
    from saferlhf.runners.common.lora import AdapterDisabled

    shared = isinstance(nets.reference, AdapterDisabled)
    scorer = nets.scorer
    held = [nets.actor.bare, nets.reward_critic.bare, nets.cost_critic.bare,
            scorer.reward.model, scorer.cost.model] + ([] if shared else [nets.reference])
    return {"stage_seconds": round(seconds, 2), "networks": networks, "peak_kib": peak_kib,
            "weights_mib": _weights_mib(*held),
            "reference": "adapter-disabled actor base" if shared else "separate frozen copy"}


def measure(stage: str, size_name: str, lora: bool, quick: bool, models: Path
            ) -> dict[str, Any]:
    """In the child process: one stage run, then its figures."""
    import peft  # noqa: F401  imported before the baseline: the stages' libraries are not
    import saferlhf.runners.ppo_lag.trainer  # noqa: F401  what the stage adds
    import saferlhf.runners.sft.train  # noqa: F401
    import torch
    import transformers  # noqa: F401

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    size = (QUICK_SIZES if quick else SIZES)[size_name]
    tracker = OptimizerBytes()
    start_kib = _status_kib("VmRSS")
    with tempfile.TemporaryDirectory() as tmp:
        row = (run_sft if stage == "sft" else run_ppo_lag)(size, lora, Path(tmp), models)
    peak_kib = row.pop("peak_kib")
    trainable = sum(n["trainable_parameters"] for n in row["networks"].values())
    return {
        **row,
        "trainable_parameters": trainable,
        "optimizer_state_mib": round(tracker.peak / 2**20, 2),
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "peak_rss_above_start_mib": round((peak_kib - start_kib) / 1024, 1),
    }


def run_child(stage: str, size: str, lora: bool, quick: bool, models: Path) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "bench.lora", "--child", f"{stage}:{size}:{int(lora)}:{models}"]
    cmd += ["--quick"] if quick else []
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                          cwd=Path(__file__).resolve().parents[1], timeout=3600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-600:]}"}
    return json.loads(lines[-1])


def _ratio(full: dict, lora: dict, key: str) -> float | None:
    if key in full and key in lora and full[key]:
        return round(lora[key] / full[key], 4)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small models (a smoke run)")
    parser.add_argument("--stages", default="sft,ppo_lag")
    parser.add_argument("--sizes", default="tiny,bigger")
    parser.add_argument("--out", help="also write the JSON line here (docs/results/lora.json)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        import logging

        logging.disable(logging.WARNING)
        stage, size, lora, models = args.child.split(":", 3)
        print(json.dumps(measure(stage, size, lora == "1", args.quick, Path(models))))
        return 0
    load_start = round(os.getloadavg()[0], 2)
    rows: dict[str, Any] = {}
    sizes = QUICK_SIZES if args.quick else SIZES
    for stage in args.stages.split(","):
        for size in args.sizes.split(","):
            with tempfile.TemporaryDirectory() as tmp:
                if stage == "ppo_lag":
                    build_ppo_inputs(sizes[size], Path(tmp))
                full = run_child(stage, size, False, args.quick, Path(tmp))
                lora = run_child(stage, size, True, args.quick, Path(tmp))
            rows[f"{stage}/{size}"] = {
                "full": full, "lora": lora,
                "lora_over_full": {k: _ratio(full, lora, k) for k in (
                    "trainable_parameters", "weights_mib", "optimizer_state_mib", "peak_rss_mib",
                    "peak_rss_above_start_mib", "stage_seconds")},
            }
    line = json.dumps({
        "command": " ".join(["python -m bench.lora", *(argv if argv is not None else
                                                       sys.argv[1:])]),
        "rows": rows,
        "gpu": {"status": "not measured", "reason": "no GPU on the build machines"},
        "config": {"quick": args.quick, "sizes": QUICK_SIZES if args.quick else SIZES,
                   "lora": LORA, "ppo_lag_lora": "actor and both critics (critic_lora)",
                   "architecture": "GPT-2 (builtin:tiny-gpt2 built from config)",
                   "memory": "peak RSS (VmHWM) per fresh process; optimizer state bytes from "
                             "the optimizers (torch has no CPU allocator statistics; "
                             "tracemalloc does not see tensor storage)",
                   "threads": int(os.environ.get("OMP_NUM_THREADS", "1"))},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform(), "load_average_1min_at_start": load_start,
                    "load_average_1min_at_end": round(os.getloadavg()[0], 2)},
    })
    print(line)
    if args.out:
        Path(args.out).write_text(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
