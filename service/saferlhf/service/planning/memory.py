"""Accelerator memory of one process, term by term (docs/running_on_gpus.md, "Memory planner").

Pure arithmetic on shapes and settings; every function returns bytes. Notation: Φ parameters of a
model, Ψ of them trained (Φ for full fine-tuning, the adapters' count for LoRA), N data-parallel
ranks, w bytes per model weight (2 in bf16/fp16, 4 in fp32), b sequences of s tokens, h hidden
size, q = heads·head_dim, I the MLP width, V the vocabulary, L_n layers.

Model states follow ZeRO (Rajbhandari et al. 2020, §3 and §5): mixed-precision Adam keeps
2Φ (16-bit weights) + 2Ψ (16-bit gradients) + KΨ with K = 12 (fp32 master weights 4, momentum 4,
variance 4); ZeRO-1 shards the K·Ψ optimizer states over N, ZeRO-2 also the gradients, ZeRO-3 also
the weights. DeepSpeed additionally materialises an fp32 copy of each gradient partition (4Ψ/N)
for the optimizer step — its own estimators count it ("18 = 2 grads_16bit + 4 grads_32bit + 4
params_32bit + 8 optimizer_states", deepspeed/runtime/zero/stage_1_and_2.py), and so do we, as a
separate term, so the paper's figures stay checkable.
"""

from __future__ import annotations

from dataclasses import dataclass

from saferlhf.service.planning.shapes import ModelShape

ADAM_BYTES = 8  # fp32 momentum + variance per trained parameter
MASTER_BYTES = 4  # fp32 master copy per trained parameter (16-bit weights, or ZeRO-1/2)
FP32_GRAD_BYTES = 4  # DeepSpeed's fp32 gradient partition at the optimizer step
# DeepSpeed's default `reduce_bucket_size` (elements): under ZeRO-2/3 a contiguous gradient
# bucket of this size (or Ψ, if smaller) lives on the device. runners/common/deepspeed_config.py
# leaves it at the default (a test checks that this stays true).
REDUCE_BUCKET_ELEMENTS = 500_000_000


def size(nbytes: float) -> str:
    """Bytes for people: GiB, MiB or KiB, one decimal."""
    for unit, scale in (("GiB", float(1 << 30)), ("MiB", float(1 << 20))):
        if abs(nbytes) >= scale:
            return f"{nbytes / scale:,.1f} {unit}"
    return f"{nbytes / 1024:,.1f} KiB"


@dataclass(frozen=True)
class Layout:
    """How a stage lays its models out over the ranks (from its backend settings)."""

    deepspeed: bool  # False: plain PyTorch (fp32, every rank holds everything)
    zero_stage: int  # 0–3 (0 when not DeepSpeed)
    world_size: int  # N: ranks that share the ZeRO partitions
    precision: str  # fp32 | bf16 | fp16 (fp32 when not DeepSpeed: the plain path ignores it)
    offload_params: bool = False  # DeepSpeed offload_param (ZeRO-3 only)
    offload_optimizer: bool = False  # DeepSpeed offload_optimizer (ZeRO ≥ 1)

    @property
    def weight_bytes(self) -> int:
        """w: bytes per weight of a trained model (DeepSpeed casts it to bf16/fp16)."""
        return 2 if self.deepspeed and self.precision in ("bf16", "fp16") else 4

    @property
    def frozen_weight_bytes(self) -> int:
        """Bytes per weight of a frozen model: the runners load every model in fp32 and only a
        ZeRO-3 engine (ppo_lag/engines.py `frozen`) casts a frozen one to the 16-bit dtype."""
        return self.weight_bytes if self.deepspeed and self.zero_stage == 3 else 4

    def shards(self, minimum_stage: int) -> int:
        return self.world_size if self.deepspeed and self.zero_stage >= minimum_stage else 1


@dataclass(frozen=True)
class Part:
    """One term of an estimate: bytes on the accelerator and bytes moved to host memory."""

    name: str
    device_bytes: int
    host_bytes: int = 0


def trained_model_states(label: str, total: int, trained: int, largest: int,
                         layout: Layout) -> list[Part]:
    """Weights, gradients and optimizer states of a model trained with Adam(W), per rank.

    weights  w·Φ / N₃        gradients  w·Ψ / N₂          (N_k = N under ZeRO ≥ k, else 1)
    master   4Ψ / N₁         Adam m, v  8Ψ / N₁           fp32 grad copy  4Ψ / N₁
    The master copy exists with 16-bit weights and under ZeRO-1/2 (which clone even fp32
    partitions); the fp32 gradient copy with 16-bit weights or any ZeRO stage (a flattened
    partition); plain fp32 Adam updates the weights in place. ZeRO-3 also gathers the largest
    module's weights and gradients (2w·largest, DeepSpeed's `largest_layer_memory`); ZeRO-2/3
    keep a gradient bucket (`REDUCE_BUCKET_ELEMENTS`).
    """
    w = layout.weight_bytes
    n1, n2, n3 = layout.shards(1), layout.shards(2), layout.shards(3)
    zero3 = layout.deepspeed and layout.zero_stage == 3
    off_p = layout.offload_params and zero3
    off_o = layout.offload_optimizer and layout.deepspeed and layout.zero_stage >= 1
    parts = [_where(f"{label}: weights", w * total // n3, off_p),
             _where(f"{label}: gradients", w * trained // n2, off_o and layout.zero_stage >= 2)]
    if w == 2 or (layout.deepspeed and layout.zero_stage in (1, 2)):
        parts.append(_where(f"{label}: fp32 master weights", MASTER_BYTES * trained // n1, off_o))
    parts.append(_where(f"{label}: Adam states", ADAM_BYTES * trained // n1, off_o))
    if layout.deepspeed and (w == 2 or layout.zero_stage >= 1):
        parts.append(_where(f"{label}: fp32 gradient copy", FP32_GRAD_BYTES * trained // n1,
                            off_o))
    if zero3:
        parts.append(Part(f"{label}: ZeRO-3 gathered module", 2 * w * largest))
    if layout.deepspeed and layout.zero_stage >= 2:
        parts.append(Part(f"{label}: gradient bucket", w * min(REDUCE_BUCKET_ELEMENTS, trained)))
    return parts


def frozen_model_states(label: str, total: int, largest: int, layout: Layout) -> list[Part]:
    """A model that is only run forward: its weights (sharded and gathered under ZeRO-3)."""
    w = layout.frozen_weight_bytes
    if layout.deepspeed and layout.zero_stage == 3:
        return [_where(f"{label}: weights", w * total // layout.world_size,
                       layout.offload_params),
                Part(f"{label}: ZeRO-3 gathered module", w * largest)]
    return [Part(f"{label}: weights", w * total)]


def _where(name: str, nbytes: int, on_host: bool) -> Part:
    return Part(name, 0, nbytes) if on_host else Part(name, nbytes)


# --- activations --------------------------------------------------------------------------------


def _norm_saved(s: ModelShape, e: int) -> int:
    """Bytes per token one norm saves besides its output: LayerNorm its input (e·h); the LLaMA
    RMSNorm an fp32 upcast and the normalised input (4h + e·h); Gemma's two fp32 tensors (8h)."""
    if s.model_type == "gpt2":
        return e * s.hidden
    if s.model_type == "gemma":
        return 8 * s.hidden
    return (4 + e) * s.hidden


def layer_activation_bytes(s: ModelShape, e: int, tokens: int, *, attention: str = "sdpa"
                           ) -> int:
    """Bytes one decoder block saves for backward per sequence of `tokens` tokens, in dtype e.

    Per token: two norms (their saved tensors and outputs 2e·h), Q, K, V (K and V at q width: with
    a padding mask HF repeats the kv heads before SDPA), the attention output and the output
    projection's input (2e·q), and the MLP: gated 4e·I (gate, act(gate), up, their product);
    plain 2e·I (c_fc's output, c_proj's input), 5e·I with GPT-2's python tanh GELU ("gelu_new",
    which saves three more tensors). Eager attention adds the softmax probabilities (e·a·s per
    token).
    """
    per_token = 2 * _norm_saved(s, e) + 2 * e * s.hidden + 5 * e * s.q_width
    per_token += (4 if s.gated else 5 if s.python_gelu else 2) * e * s.intermediate
    if s.qk_norm:
        per_token += (4 + e) * 2 * s.q_width
    if attention == "eager":
        per_token += e * s.heads * tokens
    return per_token * tokens


def lm_head_bytes(s: ModelShape, tokens: int) -> int:
    """The loss head per sequence: 12·V bytes per token, whatever the weights' dtype. Both
    losses (runners/sft/loss.py, common/generation.py token_log_probs) take an fp32 log-softmax
    over the vocabulary; its backward holds the saved fp32 output, the incoming gradient and the
    outgoing one at once (3 × 4V). The forward's logits + fp32 copy + log-softmax ((e + 8)·V)
    are no larger."""
    return 12 * s.vocab * tokens


def backward_working_bytes(s: ModelShape, e: int, tokens: int) -> int:
    """Gradients in flight while one block runs backward: two MLP-wide and two hidden-wide
    tensors, e·(2I + 2h) per token (matters only under checkpointing, see below)."""
    return e * (2 * s.intermediate + 2 * s.hidden) * tokens


def training_activation_bytes(s: ModelShape, *, head: str, sequences: int, tokens: int, e: int,
                              checkpointing: bool, attention: str = "sdpa") -> int:
    """Peak activation bytes of one forward + backward of a micro-batch (b = `sequences`).

    Without checkpointing the peak is at the loss head's backward, with every block's saved
    tensors still alive: L_n·block + final norm + head. With HF's per-block checkpointing only
    each block's input (e·h per token) is kept; the head's tensors are freed before the first
    block is recomputed, so the peak is the larger of the head and one recomputed block plus the
    gradients in flight through it. The head is the LM loss head or a score head (e·h).
    """
    per_layer = layer_activation_bytes(s, e, tokens, attention=attention)
    final = (_norm_saved(s, e) + e * s.hidden) * tokens
    top = final + (lm_head_bytes(s, tokens) if head == "lm" else e * s.hidden * tokens)
    if not checkpointing:
        return sequences * (s.layers * per_layer + top)
    recompute = per_layer + backward_working_bytes(s, e, tokens)
    return sequences * (s.layers * e * s.hidden * tokens + max(recompute, top))


# --- generation ---------------------------------------------------------------------------------


def kv_cache_bytes(s: ModelShape, *, sequences: int, tokens: int, e: int) -> int:
    """HF `generate`'s KV cache: keys and values of every layer, 2·L_n·kv_heads·d·e per token."""
    return 2 * s.layers * s.kv_width * e * sequences * tokens


def prefill_bytes(s: ModelShape, *, sequences: int, tokens: int, e: int) -> int:
    """Working set of one block's forward without grad over the prompt (the residual stream
    plus the MLP's gate, up and product tensors): e·(h + 3I) per token."""
    return e * (s.hidden + 3 * s.intermediate) * sequences * tokens
