"""LoRA adapter folders: what a LoRA stage writes as `model/`, and how later stages read it back.

A LoRA policy stage writes `model/` as a peft adapter folder —

    model/adapter_config.json       peft's config; base_model_name_or_path = the base folder
    model/adapter_model.safetensors A and B of every adapted layer (megabytes, not gigabytes)
    model/tokenizer*.json           the policy's tokenizer
    model/merged/                   optional (save_merged): a plain HF folder with W + s·B·A

— so `PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), "model")` reloads it.
The base is recorded as an absolute path, as the planner passes every model path; when the stage's
starting model has no folder of its own (a builtin model, or embeddings resized for new special
tokens) the stage writes it as `output_dir/base/`. Later stages keep using `<stage>/model`:
`saferlhf.runners.common.models.load_policy` loads the merged copy when there is one, else the base
(itself possibly an adapter folder) with the adapter merged in memory.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch
from saferlhf.runners.common.lora import engine_weights
from torch import nn

log = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
MERGED_DIR = "merged"


def is_adapter_folder(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def adapter_base(path: str | Path) -> tuple[str, str | None]:
    """(base model path or hub id, revision) recorded in an adapter folder."""
    raw = json.loads((Path(path) / ADAPTER_CONFIG).read_text())
    base = raw.get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{path}/{ADAPTER_CONFIG} names no base model "
                         "(base_model_name_or_path); it cannot be loaded on its own")
    return str(base), raw.get("revision")


def same_folder(a: str | Path, b: str | Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def merge_adapter(base: nn.Module, folder: str | Path) -> nn.Module:
    """The plain model W + s·B·A of `folder`'s adapter on `base` (merged in place, no copy)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(base, str(folder)).merge_and_unload()


def continue_adapter(base: nn.Module, folder: str | Path) -> nn.Module:
    """`base` with `folder`'s adapter attached, trainable (to go on training it)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(base, str(folder), is_trainable=True)


def save_base(model: nn.Module, tokenizer, out_dir: str | Path) -> Path:
    """Write a starting model that has no folder of its own, atomically (rank 0 only)."""
    from saferlhf.runners.common.dist import is_rank0

    out = Path(out_dir)
    if not is_rank0() or (out / "config.json").is_file():
        return out
    tmp = out.with_name(f".tmp-{out.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(out)
    return out


def save_adapter(
    peft_model: nn.Module, tokenizer, out_dir: str | Path, *, base: str,
    revision: str | None = None, merged: bool = False,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write the adapter (+ tokenizer, + `merged/` when asked) into `out_dir` (rank 0 only).

    `base` is what the adapter was trained on (a folder — recorded absolute — or a hub id);
    `state_dict` is a full gathered state dict (ZeRO-3) instead of the live parameters.
    """
    from saferlhf.runners.common.dist import is_rank0

    if not is_rank0():
        return
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = peft_model.peft_config["default"]
    config.base_model_name_or_path = str(Path(base).resolve()) if Path(base).exists() else base
    config.revision = revision
    kwargs = {"state_dict": state_dict} if state_dict is not None else {}
    peft_model.save_pretrained(str(out), save_embedding_layers=False, **kwargs)
    tokenizer.save_pretrained(out)
    if merged:
        save_merged(peft_model, tokenizer, out / MERGED_DIR, state_dict=state_dict)


def save_merged(peft_model: nn.Module, tokenizer, out_dir: str | Path, *,
                state_dict: dict[str, torch.Tensor] | None = None) -> None:
    """A plain Hugging Face folder of W + s·B·A: a model of the base architecture built on the
    meta device (no second copy of the weights) and given the merged tensors."""
    from transformers import AutoModelForCausalLM

    base = peft_model.get_base_model()
    weights = dict(engine_weights(peft_model, state_dict))
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(base.config, dtype=base.dtype)
    plain.load_state_dict(weights, strict=True, assign=True)
    plain.tie_weights()
    plain.generation_config = base.generation_config
    plain.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    log.info("merged LoRA model written to %s", out_dir)
