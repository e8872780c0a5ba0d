"""Build the rollout engine a stage's `rollout:` settings ask for."""

from __future__ import annotations

import torch
from saferlhf.runners.common.config import RolloutEngineSpec, RolloutParams
from saferlhf.runners.common.engine_checks import gpu_layout_problem
from saferlhf.runners.common.errors import InvalidInputError
from saferlhf.runners.common.rollout_engine.base import RolloutEngine
from saferlhf.runners.common.rollout_engine.hf import HFEngine
from torch import nn


def build_engine(
    spec: RolloutEngineSpec,
    *,
    model: nn.Module | None,
    tokenizer,
    model_path: str,
    seed: int = 0,
    synced_gpus: bool = False,
    local_world_size: int = 1,
    field: str = "rollout.engine",
) -> RolloutEngine:
    """`hf`: `generate` on `model` (required). `vllm`: an engine started from the HF folder
    `model_path`, in the dtype of `model`'s weights when a model is given (PPO-Lag syncs them
    into it), else float32."""
    if spec.engine == "hf":
        if model is None:
            raise ValueError("engine hf samples from a loaded model; pass model=")
        return HFEngine(model, tokenizer, synced_gpus=synced_gpus)
    from saferlhf.runners.common.rollout_engine.vllm_engine import VLLMEngine

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    problem = gpu_layout_problem(gpus_per_node=gpus, nproc_per_node=local_world_size)
    if problem:
        raise InvalidInputError(problem, field=field)
    first = next(model.parameters(), None) if model is not None else None
    return VLLMEngine(
        model_path, tokenizer, spec,
        dtype=first.dtype if first is not None else torch.float32,
        actor_vocab_size=(model.get_input_embeddings().weight.shape[0] if model is not None
                          else None),
        seed=seed,
        sleep_during_training=isinstance(spec, RolloutParams) and spec.sleep_during_training,
        field=field,
    )


def policy_engine(spec: RolloutEngineSpec, path: str, *, seed: int = 0,
                  field: str = "policy_path") -> tuple[RolloutEngine, object]:
    """(engine, tokenizer) answering with the policy folder `path` (collect, evaluate). vllm
    loads no Hugging Face copy of the weights: only the tokenizer, with the special tokens
    `load_policy` would add; a folder that lacks them would need new embedding rows, which
    only the hf engine can add."""
    from saferlhf.runners.common.models import load_policy, resolve_model_path

    try:
        if spec.engine == "hf":
            model, tokenizer = load_policy(path)
            return HFEngine(model, tokenizer), tokenizer
        folder = resolve_model_path(path, field=field)
    except InvalidInputError as e:
        raise InvalidInputError(str(e).split(": ", 1)[-1], field=field) from e
    from saferlhf.runners.common.rollout_engine.vllm_engine import VLLMEngine
    from saferlhf.runners.common.tokenizer import ensure_special_tokens
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    added = ensure_special_tokens(tokenizer)
    engine = VLLMEngine(folder, tokenizer, spec, seed=seed, field="rollout.engine")
    if added and len(tokenizer) > engine.vocab_size:
        engine.close()
        raise InvalidInputError(
            f"{folder}'s tokenizer lacks special tokens (pad/eos/bos/unk) that saferlhf adds, "
            "which needs new embedding rows; use engine: hf, or a model saved by a saferlhf "
            "stage", field="rollout.engine")
    return engine, tokenizer
