"""Throughput of reward- and cost-model training on tiny models, plain PyTorch vs DeepSpeed.

Prints ONE JSON line:
  {"rm_steps_per_second": {"plain": …, "deepspeed": …}, "cm_steps_per_second": {…},
   "tokens_per_second": {…}, "config": {…}, "machine": {…}}
tokens_per_second counts the real (attention-mask 1) tokens of both sides of every pair, over RM
and CM steps together. One process; DeepSpeed runs ZeRO-2 on the CPU accelerator with gloo.
Timed steps exclude `--warmup` steps. `--quick` runs fewer steps (same keys).

    OMP_NUM_THREADS=1 python bench/preference_models.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def machine() -> dict:
    import torch

    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu_count": os.cpu_count(), "cpu_model": model, "torch": torch.__version__,
            "threads": torch.get_num_threads(), "python": platform.python_version(),
            "load_average_1min": round(os.getloadavg()[0], 2)}


def bench(kind: str, backend: str, policy, tokenizer, records, args) -> tuple[float, float]:
    """(steps per second, tokens per second) of `kind` training under `backend`."""
    import torch
    from saferlhf.runners.common.batching import (
        PairCollator,
        encode_preferences,
        encode_safety_preferences,
    )
    from saferlhf.runners.common.config import CostConfig, RewardConfig
    from saferlhf.runners.common.dist import init_distributed
    from saferlhf.runners.common.score_model import ScoreModel
    from saferlhf.runners.common.train_loop import build_engine, make_loader
    from saferlhf.runners.cost.train import CostTask
    from saferlhf.runners.reward.train import RewardTask

    backend_cfg = ({"kind": "deepspeed", "deepspeed": {"zero_stage": 2}}
                   if backend == "deepspeed" else {"kind": "plain"})
    cls, task_cls, encode = ((RewardConfig, RewardTask, encode_preferences) if kind == "reward"
                             else (CostConfig, CostTask, encode_safety_preferences))
    split = "preference" if kind == "reward" else "safety_preference"
    cfg = cls.model_validate({
        "kind": kind, "output_dir": str(args.workdir / f"{kind}-{backend}"), "policy_path": "-",
        "data": [{"format": "synthetic", "split": split}], "batch_size": args.batch_size,
        "max_length_tokens": 96, "backend": backend_cfg, "optim": {"lr": 5e-4},
    })
    torch.manual_seed(0)
    model = ScoreModel.from_policy(policy, score_type=kind)
    samples = encode(records[split], tokenizer, cfg.max_length_tokens)
    collate = PairCollator(tokenizer.pad_token_id)
    loader = make_loader(samples, cfg.batch_size, collate, seed=0)
    steps = args.warmup + args.steps
    info = init_distributed(force_group=backend == "deepspeed")
    engine = build_engine(model, cfg, cfg.optim, steps, info)
    task = task_cls(cfg, collate, tokenizer)
    batches = iter(loader)
    tokens, start = 0, 0.0
    for i in range(steps):
        if i == args.warmup:
            start = time.perf_counter()
            tokens = 0
        batch = next(batches)
        loss, _ = task.loss(engine.module, batch)
        engine.step(loss)
        tokens += int(batch["first_attention_mask"].sum() + batch["second_attention_mask"].sum())
    elapsed = time.perf_counter() - start
    return args.steps / elapsed, tokens / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (same keys)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/saferlhf-bench"))
    args = parser.parse_args()
    args.steps = args.steps or (10 if args.quick else 40)

    import logging

    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("DeepSpeed").setLevel(logging.ERROR)
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1")
    from saferlhf.runners.common.config import ModelSpec
    from saferlhf.runners.common.dist import free_port
    from saferlhf.runners.common.models import build_policy
    from saferlhf.runners.common.template import format_prompt, format_training_text
    from saferlhf.runners.synthetic import dataset

    os.environ["MASTER_PORT"] = str(free_port())
    torch.manual_seed(0)
    texts = [format_training_text(format_prompt(r.prompt, "</s>"), r.response, "</s>")
             for r in dataset("sft", size=2000, seed=0)]
    spec = ModelSpec(path="builtin:tiny-gpt2")  # the default builtin: 4 layers, d=160
    policy, tokenizer = build_policy(spec, texts)
    n_pairs = args.batch_size * (args.warmup + args.steps)
    records = {s: dataset(s, size=n_pairs, seed=1) for s in ("preference", "safety_preference")}
    out: dict = {"rm_steps_per_second": {}, "cm_steps_per_second": {}, "tokens_per_second": {}}
    for backend in ("plain", "deepspeed"):
        tokens_rate = []
        for kind, key in (("reward", "rm_steps_per_second"), ("cost", "cm_steps_per_second")):
            steps_rate, tok_rate = bench(kind, backend, policy, tokenizer, records, args)
            out[key][backend] = round(steps_rate, 3)
            tokens_rate.append(tok_rate)
        out["tokens_per_second"][backend] = round(sum(tokens_rate) / len(tokens_rate), 1)
    out["config"] = {"model": f"builtin:tiny-gpt2 (4 layers, d=160, vocab {len(tokenizer)})",
                     "parameters": sum(p.numel() for p in policy.parameters()),
                     "batch_pairs": args.batch_size, "timed_steps": args.steps,
                     "deepspeed": "ZeRO-2, fp32, one process, client AdamW",
                     "quick": args.quick}
    out["machine"] = machine()
    out["command"] = " ".join(["python", *sys.argv])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
