"""Can the vLLM rollout engine run this policy on this hardware? Pure checks on a model's
`config.json` (or a builtin model's spec), shared by the service (at submit time, so a bad spec is
rejected with a field path instead of failing hours in) and the runner (at engine start-up).

No torch, no vllm: what vLLM supports comes from the generated `vllm_models` table. On CPU, an
unsupported attention head size is not caught by vLLM when it loads the model but at the first
`generate` ("Unsupported CPU attention configuration: head_dim=16"), so it is checked here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from saferlhf.runners.common.config import ModelSpec
from saferlhf.runners.common.vllm_models import (
    CPU_ATTENTION_HEAD_SIZES,
    TEXT_GENERATION_ARCHITECTURES,
    VLLM_VERSION,
)

BUILTIN_ARCHITECTURES = {"builtin:tiny-gpt2": "GPT2LMHeadModel",
                         "builtin:tiny-llama": "LlamaForCausalLM"}


def builtin_config(spec: ModelSpec) -> dict[str, Any] | None:
    """The config.json keys the checks read, for a builtin model (None: not a builtin)."""
    arch = BUILTIN_ARCHITECTURES.get(spec.path)
    if arch is None:
        return None
    return {"architectures": [arch], "hidden_size": spec.n_embd,
            "num_attention_heads": spec.n_head}


def folder_config(folder: str | Path) -> dict[str, Any] | None:
    """A model folder's config.json, or None when it cannot be read (the runner checks again)."""
    try:
        value = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def head_size(config: dict[str, Any]) -> int | None:
    """Attention head size: `head_dim`, else hidden size / heads (GPT-2: n_embd / n_head)."""
    explicit = config.get("head_dim")
    if isinstance(explicit, int) and explicit > 0:
        return explicit
    hidden = next((config[k] for k in ("hidden_size", "n_embd", "d_model")
                   if isinstance(config.get(k), int)), None)
    heads = next((config[k] for k in ("num_attention_heads", "n_head")
                  if isinstance(config.get(k), int)), None)
    if hidden is None or not heads or hidden % heads:
        return None
    return hidden // heads


def vllm_model_problems(config: dict[str, Any], *, on_gpu: bool) -> list[str]:
    """Why the vLLM engine cannot run a model with this config (empty: it can, as far as a
    config says)."""
    problems = []
    archs = [a for a in config.get("architectures") or [] if isinstance(a, str)]
    if not any(a in TEXT_GENERATION_ARCHITECTURES for a in archs):
        problems.append(
            f"vLLM {VLLM_VERSION} has no text-generation model for architectures {archs or '[]'} "
            "(config.json `architectures`); use engine: hf for this policy")
    size = head_size(config)
    if not on_gpu and size is not None and size not in CPU_ATTENTION_HEAD_SIZES:
        sizes = ", ".join(map(str, CPU_ATTENTION_HEAD_SIZES))
        problems.append(
            f"the policy's attention head size is {size}, but vLLM's CPU attention supports "
            f"head sizes {sizes}; pick n_embd / n_head with a supported size (e.g. 96 / 3 = "
            "32), run the stage on GPUs (resources.gpus_per_node), or use engine: hf")
    return problems


def gpu_layout_problem(*, gpus_per_node: int, nproc_per_node: int) -> str | None:
    """vLLM's in-process executor places its engine on GPU 0 of the node whatever LOCAL_RANK
    says, so several processes per GPU node would all put their engine on the same GPU."""
    if gpus_per_node > 0 and nproc_per_node > 1:
        return (f"vllm runs one in-process engine per process, on the node's first GPU, so "
                f"nproc_per_node={nproc_per_node} would stack {nproc_per_node} engines on one "
                "GPU; use nproc_per_node: 1 (one process per node) or engine: hf")
    return None
