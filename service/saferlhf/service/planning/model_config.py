"""Where a model's shape comes from: its `config.json` (a local folder, or a pinned hub revision
already in the local Hugging Face cache) or the builtin tiny models' spec fields.

Nothing is guessed: a hub model whose config is not on disk, or an architecture the planner does
not know, is `Unknown` with the reason, and the planner says so instead of estimating. Reads are
cached by (path, mtime, size), so the planner costs a stat per model on every CreateJob.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from saferlhf.runners.common.config import ModelSpec
from saferlhf.service.planning.shapes import SUPPORTED, ModelShape


@dataclass(frozen=True)
class Unknown:
    """The shape could not be determined; `reason` says why and how to help."""

    reason: str


PYTHON_GELUS = ("gelu_new", "gelu_fast")  # transformers/activations.py: written as python ops
_CACHE: dict[str, tuple[tuple[int, int], ModelShape | Unknown]] = {}
_CACHE_MAX = 256


def builtin_shape(spec: ModelSpec) -> ModelShape:
    """builtin:tiny-gpt2 / builtin:tiny-llama as runners/common/models.py builds them (the
    vocabulary is the BPE target size; the trained tokenizer may be a few ids smaller)."""
    head_dim = spec.n_embd // spec.n_head
    if spec.path == "builtin:tiny-gpt2":
        return ModelShape("gpt2", spec.n_embd, spec.n_layer, spec.n_head, spec.n_head, head_dim,
                          4 * spec.n_embd, spec.vocab_size, spec.max_position_embeddings, True,
                          python_gelu=True)
    return ModelShape("llama", spec.n_embd, spec.n_layer, spec.n_head, spec.n_head, head_dim,
                      4 * spec.n_embd, spec.vocab_size, spec.max_position_embeddings, True)


def shape_from_config(raw: dict[str, Any]) -> ModelShape | Unknown:
    """A config.json mapping → ModelShape (GPT-2 and LLaMA/Mistral/Qwen/Gemma field names)."""
    model_type = raw.get("model_type")
    if model_type not in SUPPORTED:
        return Unknown(f"architecture {model_type!r} is not one the planner knows "
                       f"({', '.join(SUPPORTED)}); no estimate")
    try:
        if model_type == "gpt2":
            h, heads = int(raw.get("n_embd", 768)), int(raw.get("n_head", 12))
            return ModelShape(
                "gpt2", h, int(raw.get("n_layer", 12)), heads, heads, h // heads,
                int(raw.get("n_inner") or 4 * h), int(raw.get("vocab_size", 50257)),
                int(raw.get("n_positions", 1024)), bool(raw.get("tie_word_embeddings", True)),
                python_gelu=raw.get("activation_function", "gelu_new") in PYTHON_GELUS)
        h, heads = int(raw["hidden_size"]), int(raw["num_attention_heads"])
        return ModelShape(
            model_type, h, int(raw["num_hidden_layers"]), heads,
            int(raw.get("num_key_value_heads") or heads),
            int(raw.get("head_dim") or h // heads), int(raw["intermediate_size"]),
            int(raw["vocab_size"]), _int_or_none(raw.get("max_position_embeddings")),
            bool(raw.get("tie_word_embeddings", model_type == "gemma")),
            qkv_bias=model_type == "qwen2" or bool(raw.get("attention_bias", False)),
            o_bias=model_type != "qwen2" and bool(raw.get("attention_bias", False)),
            mlp_bias=bool(raw.get("mlp_bias", False)),
            qk_norm=model_type == "qwen3",
        )
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        return Unknown(f"config.json lacks a usable field ({type(exc).__name__}: {exc})")


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and value > 0 else None


def read_config_shape(folder: str) -> ModelShape | Unknown:
    """The shape in `folder/config.json`, cached by the file's (mtime, size)."""
    path = os.path.join(folder, "config.json")
    try:
        st = os.stat(path)
    except OSError:
        return Unknown(f"no config.json in {folder}")
    key = (st.st_mtime_ns, st.st_size)
    hit = _CACHE.get(path)
    if hit is not None and hit[0] == key:
        return hit[1]
    try:
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
        shape = shape_from_config(raw) if isinstance(raw, dict) else Unknown(
            f"{path} is not a JSON object")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        shape = Unknown(f"cannot read {path}: {exc}")
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[path] = (key, shape)
    return shape


def hub_cache_folder(repo: str, revision: str) -> str:
    """Where huggingface_hub keeps `repo` at a pinned commit: <cache>/models--org--name/
    snapshots/<revision> (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub)."""
    cache = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache",
                                                  "huggingface"), "hub")
    return os.path.join(cache, "models--" + repo.replace("/", "--"), "snapshots", revision)


def model_shape(spec: ModelSpec) -> ModelShape | Unknown:
    """The shape of the model a spec names: builtin, local folder, or hub id (cache only). Local
    paths are absolute here (load_spec resolved them)."""
    path = spec.path
    if path.startswith("builtin:"):
        return builtin_shape(spec)
    if os.path.isdir(path):
        return read_config_shape(path)
    if spec.revision:
        snapshot = hub_cache_folder(path, spec.revision)
        if os.path.isdir(snapshot):
            return read_config_shape(snapshot)
        return Unknown(f"hub model {path!r} at revision {spec.revision[:12]}: its config.json is "
                       "not on this machine (not in the local Hugging Face cache), so its size "
                       "is unknown; download it (or give a local folder) for an estimate")
    return Unknown(f"no model folder at {path}")


def folder_shape(path: str) -> ModelShape | Unknown:
    """The shape of a `use:` folder (a stage's output given instead of trained)."""
    if not os.path.isdir(path):
        return Unknown(f"{path} is not a folder on this machine (it may exist only where the "
                       "stage runs); no estimate")
    return read_config_shape(path)
