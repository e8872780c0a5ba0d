"""Transformer shapes and exact parameter counts, from a model's config fields (no torch).

The memory planner needs Φ (all parameters), the largest single module (ZeRO-3 gathers one at a
time) and, for LoRA, the (in, out) of every linear module an adapter targets. These follow the
Hugging Face implementations of the supported families, and tests check the counts against the
real modules built on the meta device:

- `gpt2`: learned positions, LayerNorm with bias, fused `c_attn` (h → 3h), 4h MLP, biases.
- LLaMA-style decoders (`llama`, `mistral`, `qwen2`, `qwen3`, `gemma`): RMSNorm, RoPE, grouped
  query attention (kv heads ≤ heads), gated MLP (gate, up: h → I; down: I → h); Qwen2 adds q/k/v
  biases, Qwen3 a per-head q/k RMSNorm.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

LLAMA_STYLE = ("llama", "mistral", "qwen2", "qwen3", "gemma")
SUPPORTED = ("gpt2", *LLAMA_STYLE)
# PEFT's default `target_modules` when none are given
# (peft.utils.constants.TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING, peft 0.21).
PEFT_DEFAULT_TARGETS = {"gpt2": ("c_attn",), **{t: ("q_proj", "v_proj") for t in LLAMA_STYLE}}


@dataclass(frozen=True)
class ModelShape:
    """What the estimator needs to know about one transformer (a causal LM)."""

    model_type: str  # one of SUPPORTED
    hidden: int  # h
    layers: int  # number of decoder blocks
    heads: int  # attention heads (a)
    kv_heads: int  # key/value heads (GQA); = heads for multi-head attention
    head_dim: int  # d; q width is heads·d, k/v width kv_heads·d
    intermediate: int  # I, the MLP's inner width
    vocab: int  # V
    context: int | None  # maximum positions, where the config says
    tied_embeddings: bool  # the LM head shares the input embedding matrix
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False  # Qwen3: RMSNorm over each head's q and k
    python_gelu: bool = False  # GPT-2's "gelu_new": the tanh GELU as python ops (saves more)

    @property
    def gated(self) -> bool:
        return self.model_type != "gpt2"

    @property
    def q_width(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_width(self) -> int:
        return self.kv_heads * self.head_dim


@dataclass(frozen=True)
class Linear:
    name: str  # module path inside a block, e.g. "self_attn.q_proj"
    fan_in: int
    fan_out: int
    bias: bool


def block_linears(s: ModelShape) -> tuple[Linear, ...]:
    """The linear modules of one decoder block, named as in the Hugging Face implementation."""
    h, i = s.hidden, s.intermediate
    if s.model_type == "gpt2":
        return (Linear("attn.c_attn", h, 3 * h, True), Linear("attn.c_proj", h, h, True),
                Linear("mlp.c_fc", h, i, True), Linear("mlp.c_proj", i, h, True))
    return (
        Linear("self_attn.q_proj", h, s.q_width, s.qkv_bias),
        Linear("self_attn.k_proj", h, s.kv_width, s.qkv_bias),
        Linear("self_attn.v_proj", h, s.kv_width, s.qkv_bias),
        Linear("self_attn.o_proj", s.q_width, h, s.o_bias),
        Linear("mlp.gate_proj", h, i, s.mlp_bias),
        Linear("mlp.up_proj", h, i, s.mlp_bias),
        Linear("mlp.down_proj", i, h, s.mlp_bias),
    )


def _block_params(s: ModelShape) -> int:
    linears = sum(lin.fan_in * lin.fan_out + (lin.fan_out if lin.bias else 0)
                  for lin in block_linears(s))
    if s.model_type == "gpt2":
        return linears + 2 * 2 * s.hidden  # ln_1, ln_2: weight and bias
    return linears + 2 * s.hidden + (2 * s.head_dim if s.qk_norm else 0)  # two RMSNorms


def embedding_params(s: ModelShape) -> int:
    positions = (s.context or 0) * s.hidden if s.model_type == "gpt2" else 0  # wpe
    return s.vocab * s.hidden + positions


@lru_cache(maxsize=512)
def backbone_params(s: ModelShape) -> int:
    """Embeddings + blocks + final norm: the `AutoModel` a score model is built on."""
    final_norm = 2 * s.hidden if s.model_type == "gpt2" else s.hidden
    return embedding_params(s) + s.layers * _block_params(s) + final_norm


def lm_params(s: ModelShape) -> int:
    """Φ of the causal LM: the backbone plus an LM head (V·h) unless it is tied."""
    return backbone_params(s) + (0 if s.tied_embeddings else s.vocab * s.hidden)


def score_params(s: ModelShape) -> int:
    """Φ of a score model (runners/common/score_model.py): backbone + Linear(h, 1) with bias."""
    return backbone_params(s) + s.hidden + 1


def largest_module_params(s: ModelShape) -> int:
    """Parameters of the largest single module (the embedding or LM head, or an MLP matrix):
    what ZeRO-3 must gather at once (DeepSpeed's `largest_layer_params`)."""
    linears = max(lin.fan_in * lin.fan_out + (lin.fan_out if lin.bias else 0)
                  for lin in block_linears(s))
    return max(s.vocab * s.hidden, linears)


# --- LoRA -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoraInput:
    """The part of a LoRA spec that decides memory: rank and which modules get adapters.

    `target_modules`: module names matched as PEFT does (a name equal to the module path or its
    last components, e.g. "q_proj" or "attn.c_proj"), "all-linear" (every linear but the LM
    head), a regular expression (a single string: PEFT full-matches it against module paths), or
    None (PEFT's default for the architecture)."""

    r: int
    target_modules: tuple[str, ...] | str | None = None


class LoraTargetError(ValueError):
    """No module of the model matches `target_modules` (PEFT would refuse at start-up)."""


def _full_name(s: ModelShape, layer: int, name: str) -> str:
    prefix = "transformer.h" if s.model_type == "gpt2" else "model.layers"
    return f"{prefix}.{layer}.{name}"


def _selects(targets: tuple[str, ...] | str, name: str) -> bool:
    """PEFT's rule: "all-linear" is every linear but the LM head; a single string is a regular
    expression full-matched against the module path; a list matches a module whose path is a
    key or ends with "." + key."""
    if targets == "all-linear":
        return name != "lm_head"
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == key or name.endswith("." + key) for key in targets)


def lora_targets(s: ModelShape, lora: LoraInput) -> list[tuple[int, Linear]]:
    """(layer, linear) for every module that gets an adapter; layer -1 is the LM head."""
    targets = lora.target_modules
    if targets is None:
        targets = PEFT_DEFAULT_TARGETS[s.model_type]
    linears = block_linears(s)
    chosen = [(layer, lin) for layer in range(s.layers) for lin in linears
              if _selects(targets, _full_name(s, layer, lin.name))]
    if _selects(targets, "lm_head"):
        chosen.append((-1, Linear("lm_head", s.hidden, s.vocab, False)))
    if not chosen:
        names = ", ".join(sorted({lin.name.rsplit(".", 1)[-1] for lin in linears}))
        raise LoraTargetError(f"no module of this {s.model_type} model matches target_modules "
                              f"{targets!r}; its linear modules are {names} (and lm_head)")
    return chosen


def lora_params(s: ModelShape, lora: LoraInput) -> int:
    """Ψ of the adapters: r·(in + out) per targeted linear (A: r×in, B: out×r, no bias)."""
    return sum(lora.r * (lin.fan_in + lin.fan_out) for _, lin in lora_targets(s, lora))
