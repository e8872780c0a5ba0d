"""The memory planner's estimates against published figures and against measurements here.

Prints ONE JSON line and writes it to docs/results/memory_planner.json (`--no-write`: print only):
  {"command": …, "zero_paper": […], "deepspeed_estimators": […], "activations": […],
   "kv_cache": {…}, "gpu_cluster_example": {…}, "machine": {…}}
- zero_paper: per-device model states of the ZeRO paper's 7.5 B example at N_d = 64 (Figure 1).
- deepspeed_estimators: DeepSpeed 0.19.8's estimate_zero{2,3}_model_states_mem_needs vs ours.
- activations: the peak of torch's CPU memory profiler over a real forward + backward of tiny
  HF models (everything but weights, gradients and optimizer state) vs the estimate.
- gpu_cluster_example: `saferlhf plan`'s per-GPU peaks for examples/gpu_cluster.yaml with the
  published LLaMA-7B config.json (huggyllama/llama-7b) in a temporary HF cache, and the cost of
  the submit-time check (p50/p99 ms; it runs on every CreateJob) there and on the quickstart.

    OMP_NUM_THREADS=1 python bench/memory_planner.py [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
GB, MiB, GiB = 1e9, float(1 << 20), float(1 << 30)

# Tiny Hugging Face configs whose training activations are measured (and tested: the planner's
# tests/unit/service/planning/test_memory.py reuses these cases and the measurement).
LLAMA_GQA = {"model_type": "llama", "hidden_size": 256, "intermediate_size": 688,
             "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 2,
             "vocab_size": 512, "max_position_embeddings": 512}
LLAMA_BIG_VOCAB = {"model_type": "llama", "hidden_size": 128, "intermediate_size": 344,
                   "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 8000}
GPT2_WIDE = {"model_type": "gpt2", "n_embd": 384, "n_layer": 6, "n_head": 6, "vocab_size": 128,
             "n_positions": 512, "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}
QWEN2 = {"model_type": "qwen2", "hidden_size": 256, "intermediate_size": 688,
         "num_hidden_layers": 3, "num_attention_heads": 8, "num_key_value_heads": 2,
         "vocab_size": 512}
GEMMA = {"model_type": "gemma", "hidden_size": 256, "intermediate_size": 688,
         "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 1,
         "head_dim": 64, "vocab_size": 512}
QWEN3 = {"model_type": "qwen3", "hidden_size": 256, "intermediate_size": 688,
         "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
         "head_dim": 64, "vocab_size": 512}
ACTIVATION_CASES = [  # (name, config, dtype, gradient checkpointing, score head)
    ("llama-gqa bf16", LLAMA_GQA, "bfloat16", False, False),
    ("llama-gqa bf16 checkpointed", LLAMA_GQA, "bfloat16", True, False),
    ("llama big vocab fp32", LLAMA_BIG_VOCAB, "float32", False, False),
    ("llama big vocab bf16 checkpointed", LLAMA_BIG_VOCAB, "bfloat16", True, False),
    ("gpt2 fp32", GPT2_WIDE, "float32", False, False),
    ("gpt2 bf16 checkpointed", GPT2_WIDE, "bfloat16", True, False),
    ("qwen2 critic fp32 checkpointed", QWEN2, "float32", True, True),
    ("gemma bf16", GEMMA, "bfloat16", False, False),
    ("qwen3 fp32 checkpointed", QWEN3, "float32", True, False),
]


def measured_activation_peak(config, *, sequences: int, tokens: int, dtype: str,
                             checkpointing: bool, score: bool) -> int:
    """Peak bytes of everything but weights, gradients and optimizer state over one forward +
    backward (torch's CPU memory profiler), with a padded batch as the runners feed it: the
    actor's log-probs (the SFT loss's head) or a critic's value loss on every position."""
    import numpy as np
    import torch
    from saferlhf.runners.common.generation import token_log_probs
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import _CATEGORY_TO_INDEX, Category, MemoryProfileTimeline
    from transformers import AutoModel, AutoModelForCausalLM

    torch.manual_seed(0)
    if score:
        from saferlhf.runners.common.score_model import ScoreModel

        model = ScoreModel(AutoModel.from_config(config), score_type="critic",
                           normalizer_type=None)
    else:
        model = AutoModelForCausalLM.from_config(config)
    model = model.to(getattr(torch, dtype)).train()
    if checkpointing:
        (model.backbone if score else model).gradient_checkpointing_enable()
    ids = torch.randint(0, config.vocab_size, (sequences, tokens))
    mask = torch.ones(sequences, tokens, dtype=torch.long)
    mask[0, : tokens // 4] = 0  # left padding on one row
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True,
                 with_stack=True) as prof:
        if score:
            loss = model(ids, mask).scores.float().pow(2).mean()
        else:
            loss = token_log_probs(model, ids, mask).mean()
        loss.backward()
    _, sizes = MemoryProfileTimeline(prof._memory_profile())._coalesce_timeline(
        torch.device("cpu"))
    skip = {_CATEGORY_TO_INDEX[c] + 1 for c in (Category.PARAMETER, Category.GRADIENT,
                                                Category.OPTIMIZER_STATE)}
    table = np.array(sizes)
    keep = [i for i in range(table.shape[1]) if i not in skip]
    return int(table[:, keep].sum(axis=1).max())


def zero_paper() -> list[dict]:
    from saferlhf.service.planning.memory import Layout, trained_model_states

    paper = {0: ("baseline", 120.0), 1: ("P_os", 31.4), 2: ("P_os+g", 16.6),
             3: ("P_os+g+p", 1.9)}
    terms = ("weights", "gradients", "fp32 master weights", "Adam states")
    out = []
    for stage, (name, figure) in paper.items():
        parts = trained_model_states("p", 7_500_000_000, 7_500_000_000, 1,
                                     Layout(True, stage, 64, "fp16"))
        ours = sum(p.device_bytes for p in parts if p.name.split(": ", 1)[1] in terms)
        out.append({"zero": name, "paper_gb": figure, "ours_gb": round(ours / GB, 2)})
    return out


def deepspeed_estimators() -> list[dict]:
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs as zero3
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs as zero2
    from saferlhf.service.planning.memory import Layout, trained_model_states
    from saferlhf.service.planning.model_config import shape_from_config
    from saferlhf.service.planning.shapes import largest_module_params, lm_params

    from tests.unit.service.planning.model_configs import LLAMA2_70B, LLAMA_7B, hf_config

    out = []
    for model, fields, nodes, gpus in (("llama-7b", LLAMA_7B, 1, 8),
                                       ("llama2-70b", LLAMA2_70B, 8, 8)):
        shape = shape_from_config(hf_config(fields).to_dict())
        phi, largest = lm_params(shape), largest_module_params(shape)
        for stage, offload in ((2, "none"), (2, "optimizer"), (3, "none"), (3, "optimizer"),
                               (3, "all")):
            layout = Layout(True, stage, nodes * gpus, "bf16", offload_params=offload == "all",
                            offload_optimizer=offload != "none")
            parts = trained_model_states("p", phi, phi, largest, layout)
            ours = sum(p.device_bytes for p in parts if not p.name.endswith("gradient bucket"))
            if stage == 2:
                _, theirs = zero2(phi, gpus, nodes, cpu_offload=offload != "none")
            else:
                _, theirs, _ = zero3(phi, largest, gpus, nodes, cpu_offload=offload != "none",
                                     cpu_offload_params=offload == "all")
            out.append({"model": model, "parameters": phi, "gpus": nodes * gpus,
                        "zero_stage": stage, "offload": offload,
                        "deepspeed_gb": round(theirs / GB, 2), "ours_gb": round(ours / GB, 2),
                        "ratio": round(ours / theirs, 3)})
    return out


def activations() -> list[dict]:
    from saferlhf.service.planning.memory import training_activation_bytes
    from saferlhf.service.planning.model_config import shape_from_config

    from tests.unit.service.planning.model_configs import hf_config

    out = []
    for name, fields, dtype, gc, score in ACTIVATION_CASES:
        config = hf_config(fields)
        measured = measured_activation_peak(config, sequences=2, tokens=96, dtype=dtype,
                                            checkpointing=gc, score=score)
        estimate = training_activation_bytes(
            shape_from_config(config.to_dict()), head="score" if score else "lm", sequences=2,
            tokens=96, e=2 if dtype == "bfloat16" else 4, checkpointing=gc)
        out.append({"case": name, "sequences": 2, "tokens": 96,
                    "measured_mib": round(measured / MiB, 2),
                    "estimated_mib": round(estimate / MiB, 2),
                    "ratio": round(estimate / measured, 3)})
    return out


def kv_cache() -> dict:
    import torch
    from saferlhf.service.planning.memory import kv_cache_bytes
    from saferlhf.service.planning.model_config import shape_from_config
    from transformers import AutoModelForCausalLM

    from tests.unit.service.planning.model_configs import hf_config

    config = hf_config(LLAMA_GQA)
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        out = model(input_ids=torch.randint(0, 512, (3, 40)), use_cache=True)
    held = sum(layer.keys.nbytes + layer.values.nbytes for layer in out.past_key_values.layers)
    ours = kv_cache_bytes(shape_from_config(config.to_dict()), sequences=3, tokens=40, e=4)
    return {"case": "llama-gqa fp32, 3 × 40 tokens", "measured_bytes": held,
            "estimated_bytes": ours}


def _check_ms(job, n: int = 500) -> dict:
    """p50 / p99 milliseconds of the submit-time check (`memory_violations`) on a loaded spec."""
    import time

    from saferlhf.service.planning.fit import memory_violations

    for _ in range(20):
        memory_violations(job, {})
    times = []
    for _ in range(n):
        start = time.perf_counter()
        memory_violations(job, {})
        times.append((time.perf_counter() - start) * 1000.0)
    times.sort()
    return {"p50_ms": round(times[n // 2], 3), "p99_ms": round(times[int(0.99 * n) - 1], 3)}


def gpu_cluster_example() -> dict:
    """The plan of examples/gpu_cluster.yaml, and the check's cost there and on the quickstart
    (the quickstart's stages run on CPU, so the check skips estimating them)."""
    from saferlhf.service.planning.fit import memory_plan
    from saferlhf.service.spec.load import load_spec_file

    from tests.unit.service.planning.model_configs import LLAMA_7B, write_model_folder

    quickstart = load_spec_file(ROOT / "examples" / "quickstart.yaml")
    with tempfile.TemporaryDirectory() as hub:
        previous = os.environ.get("HF_HUB_CACHE")
        os.environ["HF_HUB_CACHE"] = hub
        try:
            job = load_spec_file(ROOT / "examples" / "gpu_cluster.yaml", check_data=False,
                                 allow_hub=True)
            snapshot = Path(hub) / "models--huggyllama--llama-7b" / "snapshots" / \
                str(job.spec.model.revision)
            write_model_folder(snapshot, LLAMA_7B)
            rows = memory_plan(job)
            cost = {"gpu_cluster": _check_ms(job), "quickstart": _check_ms(quickstart)}
        finally:
            if previous is None:
                os.environ.pop("HF_HUB_CACHE")
            else:
                os.environ["HF_HUB_CACHE"] = previous
    stages = {r.stage: {"status": r.status,
                        "peak_gib_per_gpu": round((r.peak_bytes or 0) / GiB, 1),
                        "at": r.peak_phase, "layout": r.layout, "devices": r.devices}
              for r in rows}
    return {"stages": stages, "check_cost": cost}


def machine() -> dict:
    import torch
    import transformers

    return {"cpu_count": os.cpu_count(), "platform": platform.platform(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "load_average_1min": round(os.getloadavg()[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    result = {"command": "OMP_NUM_THREADS=1 python bench/memory_planner.py",
              "zero_paper": zero_paper(), "deepspeed_estimators": deepspeed_estimators(),
              "activations": activations(), "kv_cache": kv_cache(),
              "gpu_cluster_example": gpu_cluster_example(), "machine": machine()}
    line = json.dumps(result)
    print(line)
    if not args.no_write:
        (ROOT / "docs" / "results" / "memory_planner.json").write_text(
            json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
