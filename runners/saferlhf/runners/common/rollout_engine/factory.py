"""Build the rollout engine a stage's `rollout:` settings ask for.

vLLM starts from a plain Hugging Face folder. A LoRA policy folder holds only an adapter
(saferlhf.runners.common.adapters), so its engine starts from the folder's `merged/` copy when
there is one, else from the plain folder at the bottom of its chain of bases — a model of the
same architecture whose weights are then replaced by a sync of the merged policy before the
engine samples (PPO-Lag syncs the actor first thing; `policy_engine` syncs here).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import torch
from saferlhf.runners.common.config import RolloutEngineSpec, RolloutParams
from saferlhf.runners.common.engine_checks import gpu_layout_problem
from saferlhf.runners.common.errors import InvalidInputError
from saferlhf.runners.common.rollout_engine.base import RolloutEngine
from saferlhf.runners.common.rollout_engine.hf import HFEngine
from torch import nn

MAX_ADAPTER_CHAIN = 8


def build_engine(
    spec: RolloutEngineSpec,
    *,
    model: nn.Module | None,
    tokenizer,
    model_path: str,
    seed: int = 0,
    synced_gpus: bool = False,
    local_world_size: int = 1,
    precision: Callable[[], contextlib.AbstractContextManager] | None = None,
    field: str = "rollout.engine",
) -> RolloutEngine:
    """`hf`: `generate` on `model` (required), with the spec's sampling loop (`decode`,
    `compile`: PPO-Lag's rollout settings) inside `precision`. `vllm`: an engine started from
    the policy folder `model_path` (or, for a LoRA adapter folder, its plain base: sync before
    sampling), in the dtype of `model`'s weights when a model is given, else float32."""
    if spec.engine == "hf":
        if model is None:
            raise ValueError("engine hf samples from a loaded model; pass model=")
        return HFEngine(model, tokenizer, synced_gpus=synced_gpus,
                        decode=getattr(spec, "decode", "auto"),
                        compile=getattr(spec, "compile", False), precision=precision)
    from saferlhf.runners.common.rollout_engine.vllm_engine import VLLMEngine

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    problem = gpu_layout_problem(gpus_per_node=gpus, nproc_per_node=local_world_size)
    if problem:
        raise InvalidInputError(problem, field=field)
    first = next(model.parameters(), None) if model is not None else None
    return VLLMEngine(
        plain_folder(model_path, field=field), tokenizer, spec,
        dtype=first.dtype if first is not None else torch.float32,
        actor_vocab_size=(model.get_input_embeddings().weight.shape[0] if model is not None
                          else None),
        seed=seed,
        sleep_during_training=isinstance(spec, RolloutParams) and spec.sleep_during_training,
        field=field,
    )


def plain_folder(path: str, *, field: str = "rollout.engine") -> str:
    """A plain HF folder vLLM can start from: `path` itself, or for a LoRA adapter folder its
    `merged/` copy, else the first plain folder down its chain of bases."""
    from saferlhf.runners.common.adapters import MERGED_DIR, adapter_base, is_adapter_folder

    folder = path
    for _ in range(MAX_ADAPTER_CHAIN + 1):
        if not is_adapter_folder(folder):
            return folder
        if (Path(folder) / MERGED_DIR / "config.json").is_file():
            return str(Path(folder) / MERGED_DIR)
        base, _ = adapter_base(folder)
        if not Path(base).is_dir():
            raise InvalidInputError(
                f"the LoRA adapter in {folder} was trained on {base}, which is not a local "
                "folder; vLLM starts from a plain model folder (save_merged: true gives one)",
                field=field)
        folder = base
    raise InvalidInputError(f"{path}: a chain of more than {MAX_ADAPTER_CHAIN} LoRA adapters",
                            field=field)


def policy_engine(spec: RolloutEngineSpec, path: str, *, seed: int = 0,
                  field: str = "policy_path") -> tuple[RolloutEngine, object]:
    """(engine, tokenizer) answering with the policy folder `path` (collect, evaluate). vllm
    loads no Hugging Face copy of a plain folder's weights, only its tokenizer with the special
    tokens `load_policy` would add (a folder lacking them would need new embedding rows, which
    only the hf engine can add); a LoRA folder without `merged/` is merged in memory and synced."""
    from saferlhf.runners.common.models import load_policy, resolve_model_path

    try:
        if spec.engine == "hf":
            model, tokenizer = load_policy(path)
            return HFEngine(model, tokenizer), tokenizer
        folder = resolve_model_path(path, field=field)
    except InvalidInputError as e:
        raise InvalidInputError(str(e).split(": ", 1)[-1], field=field) from e
    from saferlhf.runners.common.adapters import MERGED_DIR, is_adapter_folder
    from saferlhf.runners.common.rollout_engine.vllm_engine import VLLMEngine

    if is_adapter_folder(folder) and not (Path(folder) / MERGED_DIR / "config.json").is_file():
        return _merged_engine(spec, folder, seed=seed, field=field)
    start = plain_folder(folder)
    from saferlhf.runners.common.tokenizer import ensure_special_tokens
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(start)
    added = ensure_special_tokens(tokenizer)
    engine = VLLMEngine(start, tokenizer, spec, seed=seed, field="rollout.engine")
    if added and len(tokenizer) > engine.vocab_size:
        engine.close()
        raise InvalidInputError(
            f"{start}'s tokenizer lacks special tokens (pad/eos/bos/unk) that saferlhf adds, "
            "which needs new embedding rows; use engine: hf, or a model saved by a saferlhf "
            "stage", field="rollout.engine")
    return engine, tokenizer


def _merged_engine(spec: RolloutEngineSpec, folder: str, *, seed: int,
                   field: str) -> tuple[RolloutEngine, object]:
    """A LoRA adapter folder without `merged/`: the policy merged in memory by `load_policy`,
    synced into an engine started on its plain base."""
    from saferlhf.runners.common.models import load_policy
    from saferlhf.runners.common.rollout_engine.sync import sync_engine

    model, tokenizer = load_policy(folder, field=field)
    engine = build_engine(spec, model=model, tokenizer=tokenizer, model_path=folder, seed=seed)
    sync_engine(engine, model, deadline_seconds=RolloutParams().weight_sync_deadline_seconds)
    return engine, tokenizer
