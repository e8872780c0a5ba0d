"""One PPO-Lagrangian iteration, timed by phase (issue 3, part 6). Prints ONE JSON line.

    python -m bench.ppo_step [--quick] [--backends plain,zero2,zero3] [--out FILE]

For each backend (each in a fresh process): six tiny random models (actor, reference, RM, CM and
the two critics; a ~3 M-parameter LLaMA, or a ~0.2 M GPT-2 with --quick), a prompt batch of 8
with 64 new tokens (16 with --quick), one PPO epoch; one warm-up iteration, then the mean over
the measured ones of

- iteration_seconds, tokens_per_second (generated response tokens / iteration second);
- breakdown: seconds per phase — generate, score (RM + CM forwards), reference_log_probs
  (actor + reference forwards), values (both critics' forwards), actor (forward, backward,
  optimizer step), critics (same for both critics); with the default `reuse_rollout_forward`
  and one micro-batch per iteration the first update's forwards stand in for the rollout's
  actor and critic forwards, so `values` is 0 and `reference_log_probs` the reference alone;
- overhead_ratio = 1 − Σ breakdown / iteration_seconds: the share spent outside model
  forward/backward/optimizer/generate calls (shaping, GAE, λ update, metrics, events, data).
  Target ≤ 0.10 on plain;
- peak_rss_mb of the backend's process.

No GPU is available on the build machines, so the GPU row is reported as "not measured".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PHASES = ("generate", "score", "reference_log_probs", "values", "actor", "critics")
BACKENDS = {
    "plain": {"kind": "plain"},
    "zero2": {"kind": "deepspeed", "deepspeed": {"zero_stage": 2}},
    "zero3": {"kind": "deepspeed", "deepspeed": {"zero_stage": 3}},
}


def model_size(quick: bool) -> dict:
    if quick:
        return {"kind": "builtin:tiny-gpt2", "n_layer": 2, "n_embd": 64, "n_head": 2,
                "vocab_size": 400, "context": 64}
    return {"kind": "builtin:tiny-llama", "n_layer": 4, "n_embd": 256, "n_head": 4,
            "vocab_size": 1000, "context": 128}


def measure(backend: str, quick: bool, workdir: Path) -> dict:
    """Run in a child process: build the models, time the iterations, return the figures."""
    import torch
    from saferlhf.runners.common.checkpoint import StopSignal, seed_everything
    from saferlhf.runners.common.events import EventSink
    from saferlhf.runners.common.train_setup import init_stage_distributed
    from saferlhf.runners.ppo_lag.timing import PhaseTimer
    from saferlhf.runners.ppo_lag.tiny import (
        build_tiny_policy,
        build_tiny_score_model,
        tiny_stage_config,
    )
    from saferlhf.runners.ppo_lag.trainer import PPOLagTrainer

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    warmup, measured = 1, (2 if quick else 3)
    size = model_size(quick)
    policy = build_tiny_policy(workdir / "policy", **size)
    rm = build_tiny_score_model(workdir / "rm", policy, "reward", seed=1)
    cm = build_tiny_score_model(workdir / "cm", policy, "cost", seed=2)
    new_tokens = 16 if quick else 64
    cfg = tiny_stage_config(
        policy, workdir / f"out-{backend}", reward_source="model", reward_model_path=str(rm),
        cost_model_path=str(cm), iterations=warmup + measured, batch_size=8,
        rollout={"prompt_batch_size": 8, "max_new_tokens": new_tokens},
        max_length_tokens=size["context"] - new_tokens, backend=BACKENDS[backend],
        checkpoint_every_steps=100000,
    )
    dist = init_stage_distributed(cfg, None)
    seed_everything(cfg.seed)
    timer = PhaseTimer()
    trainer = PPOLagTrainer(cfg, EventSink(cfg.output_dir), dist, timer=timer)
    trainer.setup()
    trainer.stop = StopSignal()
    for _ in range(warmup):
        trainer.run_iteration()
        trainer.state.iteration += 1
    timer.reset()
    tokens = 0
    start = time.perf_counter()
    for _ in range(measured):
        before = trainer.state.global_step
        trainer.run_iteration()
        trainer.state.iteration += 1
        assert trainer.state.global_step > before
        tokens += int(trainer.state.last_metrics["train/mean_generated_length"] * 8)
    elapsed = (time.perf_counter() - start) / measured
    breakdown = {k: round(timer.totals.get(k, 0.0) / measured, 4) for k in PHASES}
    inside = sum(breakdown.values())
    params = sum(getattr(p, "ds_numel", p.numel()) for p in trainer.nets.actor.bare.parameters())
    return {
        "iteration_seconds": round(elapsed, 4),
        "tokens_per_second": round(tokens / measured / elapsed, 1),
        "breakdown": breakdown,
        "overhead_ratio": round(max(0.0, 1.0 - inside / elapsed), 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "actor_parameters": params,
    }


def run_child(backend: str, quick: bool) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "bench.ppo_step", "--child", backend] + (["--quick"] if quick
                                                                            else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                          cwd=Path(__file__).resolve().parents[1], timeout=1800)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-400:]}"}
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller model, 16 new tokens")
    parser.add_argument("--backends", default="plain,zero2,zero3")
    parser.add_argument("--out", help="also write the JSON line here (docs/results/ppo_step.json)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        import logging

        logging.disable(logging.WARNING)
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(measure(args.child, args.quick, Path(tmp))))
        return 0
    rows = {name: run_child(name, args.quick) for name in args.backends.split(",")}
    rows["gpu"] = {"status": "not measured", "reason": "no GPU on the build machines"}
    plain = rows.get("plain", {})
    line = json.dumps({
        "command": "python -m bench.ppo_step" + (" --quick" if args.quick else ""),
        "iteration_seconds": plain.get("iteration_seconds"),
        "tokens_per_second": plain.get("tokens_per_second"),
        "breakdown": plain.get("breakdown"),
        "overhead_ratio": plain.get("overhead_ratio"),
        "peak_rss_mb": plain.get("peak_rss_mb"),
        "backends": rows,
        "config": {"quick": args.quick, "model": model_size(args.quick), "prompt_batch": 8,
                   "max_new_tokens": 16 if args.quick else 64, "update_iters": 1,
                   "threads": int(os.environ.get("OMP_NUM_THREADS", "1"))},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "load_average_1min_at_end": round(os.getloadavg()[0], 2)},
    })
    print(line)
    if args.out:
        Path(args.out).write_text(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
