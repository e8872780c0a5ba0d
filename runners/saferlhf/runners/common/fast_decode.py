"""A lean sampling loop with a static KV cache for the builtin model families (GPT-2, LLaMA).

Why: at rollout sizes (a batch of 8, one token per step) a decode step is dominated by per-step
overhead, not by its GEMMs — Hugging Face `generate` rebuilds a 4-D attention mask, grows every
layer's KV cache by concatenation and walks its generic processor and stopping machinery each
step. This loop keeps one preallocated key/value buffer per layer (written in place), attends over
the filled prefix with an additive padding mask (query heads that share a key/value head batched
as its rows), and applies the model's own weights through the functional forms of its modules
(LLaMA's q/k/v and gate/up projections stacked into one product each, its rotary angles from
its own rotary module, looked up per position); the prompt is prefilled by the model's forward.

Sampling is Hugging Face's: its own logits-processor classes in its order (repetition penalty,
min_new_tokens from the model's generation config, temperature, top-p), softmax in float32, one
`torch.multinomial` draw per step, finished rows continued with the pad token, stop when every
row has emitted EOS or `max_new_tokens` are reached. Under the same seed it samples the same tokens
as `generate` (tests/unit/runners/test_fast_decode.py).

`unsupported_reason` says when the loop does not apply — another architecture, non-default
attention options, adapter / quantisation / sharding modules or hooks (LoRA, ZeRO-3), generation
settings it does not implement — and `generation.generate` then uses Hugging Face `generate`.

`compile=True` wraps the decode step in `torch.compile` (attention over the whole buffer with a
mask, so one graph serves every step); the one-off compile time is kept in `compile_seconds()`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# generation_config fields the loop implements or that do not affect sampling
_GENERATION_FIELDS = frozenset({
    "bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id", "use_cache",
    "output_attentions", "output_hidden_states", "_from_model_config", "transformers_version",
    "min_new_tokens", "return_dict_in_generate",
})
log = logging.getLogger(__name__)
_COMPILE: dict[str, float] = {}
STATIC_ROPE = ("default", "linear", "llama3")  # rotary angles that depend on the position only


def compile_seconds() -> float | None:
    """Seconds spent compiling decode steps in this process (None when nothing was compiled)."""
    return _COMPILE.get("seconds")


# --- eligibility ------------------------------------------------------------------------------


def _allowed_modules(model: nn.Module) -> tuple[str, tuple[type, ...]] | None:
    """(family, module classes the loop knows) for the supported model classes."""
    from transformers import GPT2LMHeadModel, LlamaForCausalLM
    from transformers.activations import ACT2CLS

    common = (nn.ModuleList, nn.Embedding, nn.Dropout, nn.Identity,
              *{cls if isinstance(cls, type) else cls[0] for cls in ACT2CLS.values()})
    if type(model) is GPT2LMHeadModel:
        from transformers.models.gpt2 import modeling_gpt2 as g
        from transformers.pytorch_utils import Conv1D

        return "gpt2", (*common, GPT2LMHeadModel, g.GPT2Model, g.GPT2Block, g.GPT2Attention,
                        g.GPT2MLP, Conv1D, nn.LayerNorm, nn.Linear)
    if type(model) is LlamaForCausalLM:
        from transformers.models.llama import modeling_llama as m

        return "llama", (*common, LlamaForCausalLM, m.LlamaModel, m.LlamaDecoderLayer,
                         m.LlamaAttention, m.LlamaMLP, m.LlamaRMSNorm, m.LlamaRotaryEmbedding,
                         nn.Linear, nn.SiLU)
    return None


def unsupported_reason(model: nn.Module, *, synced_gpus: bool = False) -> str | None:
    """Why the lean loop cannot sample from `model` (None: it can)."""
    if synced_gpus:
        return "synced_gpus (ZeRO-3 shards the weights this loop reads directly)"
    known = _allowed_modules(model)
    if known is None:
        return f"{type(model).__name__} is not a builtin family (GPT-2, LLaMA)"
    if model.training:
        return "the model is in train mode (the loop leaves dropout out)"
    family, allowed = known
    for name, module in model.named_modules():
        if type(module) not in allowed:
            return f"module {name or '<model>'} is a {type(module).__name__} (adapter, " \
                   "quantisation or other modules the loop does not know)"
        if module._forward_hooks or module._forward_pre_hooks:
            return f"module {name or '<model>'} has forward hooks"
    config = model.config
    if family == "gpt2" and (not config.scale_attn_weights or config.scale_attn_by_inverse_layer_idx
                             or config.add_cross_attention or config.reorder_and_upcast_attn):
        return "GPT-2 attention options other than the defaults"
    if family == "llama" and getattr(config, "sliding_window", None):
        return "sliding-window attention"
    rope = getattr(getattr(getattr(model, "model", None), "rotary_emb", None), "rope_type", None)
    if family == "llama" and rope not in STATIC_ROPE:
        return f"rope type {rope!r} (its angles may depend on the sequence length)"
    extra = set(model.generation_config.to_diff_dict()) - _GENERATION_FIELDS
    if extra:
        return f"generation_config sets {sorted(extra)}"
    devices = {p.device for p in model.parameters()}
    if len(devices) != 1:
        return "parameters on several devices"
    return None


# --- the model side: one decode step over a static cache ---------------------------------------


@dataclass
class StaticCache:
    keys: list[torch.Tensor]  # per layer (B·H_kv, T, D)
    values: list[torch.Tensor]  # per layer (B·H_kv, T, D)
    bias: torch.Tensor  # (B·H_kv, 1, T) additive mask: 0 = attend, −inf = padding / not yet
    fused: list[tuple] | None = None  # per-layer stacked weights (LLaMA: `_llama_fused`)


def _prefill(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
             positions: torch.Tensor, total: int) -> tuple[torch.Tensor, StaticCache]:
    """The model's own forward over the prompt (B, S); its KV cache copied into buffers of
    `total` columns. Returns the last position's logits (B, V) and the cache."""
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                use_cache=True)
    B, S = input_ids.shape
    keys, values = [], []
    for layer in out.past_key_values.layers:
        k, v = layer.keys, layer.values  # (B, H_kv, S, D)
        heads, dim = k.shape[1], k.shape[3]
        kb = k.new_zeros(B * heads, total, dim)
        vb = v.new_zeros(B * heads, total, dim)
        kb[:, :S] = k.reshape(B * heads, S, dim)
        vb[:, :S] = v.reshape(B * heads, S, dim)
        keys.append(kb)
        values.append(vb)
    heads = keys[0].shape[0] // B
    bias = torch.full((B, heads, 1, total), float("-inf"), dtype=keys[0].dtype,
                      device=input_ids.device)
    bias[..., :S].masked_fill_(attention_mask.bool()[:, None, None, :], 0.0)
    return out.logits[:, -1], StaticCache(keys, values, bias.view(B * heads, 1, total))


def _attend(q: torch.Tensor, cache: StaticCache, layer: int, k: torch.Tensor, v: torch.Tensor,
            column: int | torch.Tensor, width: int, scaling: float) -> torch.Tensor:
    """Write k, v (B, H_kv, 1, D) at `column` (an int, or a 1-element tensor in the compiled
    step, so that one graph serves every step); attend q (B, H, 1, D) over the first `width`
    columns → (B, H·D). Query heads sharing a key/value head (grouped-query attention: head
    h = kv·G + g, as HF's repeat_kv orders them) are that head's G query rows, so no key or
    value is ever copied per query head."""
    B, H, _, D = q.shape
    keys, values = cache.keys[layer], cache.values[layer]  # (B·H_kv, T, D)
    kv = keys.shape[0]
    if isinstance(column, torch.Tensor):
        keys.index_copy_(1, column, k.reshape(kv, 1, D))
        values.index_copy_(1, column, v.reshape(kv, 1, D))
    else:
        keys[:, column] = k.reshape(kv, D)
        values[:, column] = v.reshape(kv, D)
    scores = torch.baddbmm(cache.bias[..., :width], q.reshape(kv, H * B // kv, D),
                           keys[:, :width].transpose(1, 2), alpha=scaling)  # (B·H_kv, G, W)
    out = torch.bmm(scores.softmax(dim=-1), values[:, :width])  # (B·H_kv, G, D)
    return out.view(B, H * D)


def _gpt2_step(model, ids, positions, cache, column, width):
    """GPT-2 for one new token per row: ids, positions (B,) → logits (B, V). The modules'
    own weights through the functional forms of their forwards (Conv1D: bias + x @ W)."""
    tr = model.transformer
    x = tr.wte(ids) + tr.wpe(positions)  # (B, E); dropout is the identity in eval mode
    B, E = x.shape
    for i, block in enumerate(tr.h):
        attn, mlp, ln_1, ln_2 = block.attn, block.mlp, block.ln_1, block.ln_2
        h = F.layer_norm(x, (E,), ln_1.weight, ln_1.bias, ln_1.eps)
        qkv = torch.addmm(attn.c_attn.bias, h, attn.c_attn.weight)  # (B, 3E)
        q, k, v = qkv.view(B, 3, attn.num_heads, 1, attn.head_dim).unbind(1)  # (B, H, 1, D)
        a = _attend(q, cache, i, k, v, column, width, attn.scaling)  # (B, E)
        x = torch.addmm(attn.c_proj.bias, a, attn.c_proj.weight) + x
        h = F.layer_norm(x, (E,), ln_2.weight, ln_2.bias, ln_2.eps)
        h = mlp.act(torch.addmm(mlp.c_fc.bias, h, mlp.c_fc.weight))
        x = x + torch.addmm(mlp.c_proj.bias, h, mlp.c_proj.weight)
    x = F.layer_norm(x, (E,), tr.ln_f.weight, tr.ln_f.bias, tr.ln_f.eps)
    return F.linear(x, model.lm_head.weight, model.lm_head.bias)


def _llama_step(model, ids, positions, cache, column, width):
    """LLaMA for one new token per row: ids, positions (B,) → logits (B, V). Per layer the
    q/k/v projections run as one matrix product, and gate/up as another (`_llama_fused`)."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    core = model.model
    x = core.embed_tokens(ids)  # (B, E)
    cos, sin = _rotary(model, x, positions)  # (B, 1, D) each
    B = x.shape[0]
    for i, layer in enumerate(core.layers[: model.config.num_hidden_layers]):
        attn, mlp = layer.self_attn, layer.mlp
        qkv_w, qkv_b, q_size, kv_size, gate_up_w, gate_up_b = cache.fused[i]
        h = _rms_norm(x, layer.input_layernorm)
        q, k, v = F.linear(h, qkv_w, qkv_b).split([q_size, kv_size, kv_size], dim=-1)
        q = q.view(B, -1, 1, attn.head_dim)  # (B, H, 1, D)
        k = k.view(B, -1, 1, attn.head_dim)  # (B, H_kv, 1, D)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        a = _attend(q, cache, i, k, v.view(B, -1, 1, attn.head_dim), column, width,
                    attn.scaling)
        x = x + F.linear(a, attn.o_proj.weight, attn.o_proj.bias)
        h = _rms_norm(x, layer.post_attention_layernorm)
        gate, up = F.linear(h, gate_up_w, gate_up_b).chunk(2, dim=-1)
        x = x + F.linear(mlp.act_fn(gate) * up, mlp.down_proj.weight, mlp.down_proj.bias)
    return F.linear(_rms_norm(x, core.norm), model.lm_head.weight, model.lm_head.bias)


def _llama_fused(model) -> list[tuple]:
    """Per layer (qkv weight, qkv bias, q rows, k/v rows, gate·up weight, gate·up bias): the
    projections that read the same input stacked, once per sampling call (the weights change
    between rollouts)."""
    def stacked(*linears):
        weight = torch.cat([m.weight for m in linears])
        bias = None if linears[0].bias is None else torch.cat([m.bias for m in linears])
        return weight, bias

    out = []
    for layer in model.model.layers[: model.config.num_hidden_layers]:
        attn, mlp = layer.self_attn, layer.mlp
        qkv_w, qkv_b = stacked(attn.q_proj, attn.k_proj, attn.v_proj)
        gate_up_w, gate_up_b = stacked(mlp.gate_proj, mlp.up_proj)
        out.append((qkv_w, qkv_b, attn.q_proj.out_features, attn.k_proj.out_features,
                    gate_up_w, gate_up_b))
    return out


def _rms_norm(x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
    """LlamaRMSNorm's forward without the module call and, in float32, without its casts."""
    if x.dtype != torch.float32 or norm.weight.dtype != torch.float32:
        return norm(x)  # it normalises in float32 and casts back before the weight
    return norm.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True)
                                          + norm.variance_epsilon))


def _rotary(model, x: torch.Tensor, positions: torch.Tensor):
    """The rotary embedding's (cos, sin) at `positions` (B,) → (B, 1, D) each, looked up in a
    table the model's own rotary module computes once per table size (its values at those
    positions, without recomputing the angles every step)."""
    size = model.config.max_position_embeddings
    table = getattr(model, "_saferlhf_rotary", None)
    if table is None or table[0].dtype != x.dtype or table[0].device != x.device:
        every = torch.arange(size, device=x.device)[None]  # (1, P)
        cos, sin = model.model.rotary_emb(x, every)  # (1, P, D) each
        table = (cos[0], sin[0])
        model._saferlhf_rotary = table
    return table[0][positions][:, None], table[1][positions][:, None]


_STEPS: dict[str, Callable] = {"gpt2": _gpt2_step, "llama": _llama_step}


def _step_function(model: nn.Module, compile: bool) -> Callable:
    family, _ = _allowed_modules(model)  # type: ignore[misc]
    step = _STEPS[family]
    if not compile:
        return step
    compiled = getattr(model, "_saferlhf_compiled_step", None)
    if compiled is None:
        compiled = torch.compile(step, dynamic=False)
        model._saferlhf_compiled_step = compiled  # one compiled step per model object
        model._saferlhf_compiled_shapes = set()
    return compiled


COMPILE_BUCKET = 32  # compiled caches are this many columns longer at most: fewer recompiles


# --- the sampling loop ------------------------------------------------------------------------


def _processors(model, *, repetition_penalty: float, temperature: float, top_p: float,
                prompt_width: int, eos_token_id: int | None, do_sample: bool):
    """Hugging Face's logits processors for these settings, in `generate`'s order."""
    from transformers.generation import logits_process as lp

    out = lp.LogitsProcessorList()
    if repetition_penalty != 1.0:
        out.append(lp.RepetitionPenaltyLogitsProcessor(penalty=repetition_penalty))
    min_new = getattr(model.generation_config, "min_new_tokens", None)
    if min_new and eos_token_id is not None:
        out.append(lp.MinNewTokensLengthLogitsProcessor(prompt_width, min_new, eos_token_id))
    if do_sample:
        if temperature != 1.0:
            out.append(lp.TemperatureLogitsWarper(temperature))
        if top_p < 1.0:
            out.append(lp.TopPLogitsWarper(top_p=top_p))
    return out


@torch.no_grad()
def sample(
    model: nn.Module,
    input_ids: torch.Tensor,  # size = (B, S), left-padded
    attention_mask: torch.Tensor,  # size = (B, S)
    *,
    max_new_tokens: int,
    eos_token_id: int | None,
    pad_token_id: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    num_return_sequences: int = 1,
    do_sample: bool = True,
    compile: bool = False,
) -> torch.Tensor:  # size = (B·n, S + steps), rows prompt-major like `generate`
    """Sample responses as Hugging Face `generate(do_sample=…, top_k=0, …)` does (module doc)."""
    n = num_return_sequences
    input_ids = input_ids.repeat_interleave(n, dim=0)
    attention_mask = attention_mask.repeat_interleave(n, dim=0)
    B, S = input_ids.shape
    total = S + max_new_tokens
    if compile:  # one graph per (rows, buffer width): round the width up to a bucket
        total = -(-total // COMPILE_BUCKET) * COMPILE_BUCKET
    processors = _processors(model, repetition_penalty=repetition_penalty,
                             temperature=temperature, top_p=top_p, prompt_width=S,
                             eos_token_id=eos_token_id, do_sample=do_sample)
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, S)
    logits, cache = _prefill(model, input_ids, attention_mask, positions, total)
    if _allowed_modules(model)[0] == "llama":  # type: ignore[index]
        cache.fused = _llama_fused(model)
    step = _step_function(model, compile)
    sequences = torch.full((B, total), pad_token_id, dtype=input_ids.dtype,
                           device=input_ids.device)
    sequences[:, :S] = input_ids
    unfinished = torch.ones(B, dtype=torch.long, device=input_ids.device)
    last = positions[:, -1]  # (B,)
    width = S
    for t in range(max_new_tokens):
        scores = processors(sequences[:, :width], logits.to(torch.float32, copy=True))  # (B, V)
        if do_sample:
            token = torch.multinomial(F.softmax(scores, dim=-1), num_samples=1).squeeze(1)
        else:
            token = scores.argmax(dim=-1)
        if eos_token_id is not None:
            token = token * unfinished + pad_token_id * (1 - unfinished)
            unfinished = unfinished & (token != eos_token_id).long()
        sequences[:, width] = token
        width += 1
        if (eos_token_id is not None and not unfinished.any()) or t == max_new_tokens - 1:
            break
        cache.bias[:, 0, width - 1] = 0.0  # the new token (pad on finished rows) attends
        last = last + 1
        if not compile:
            logits = step(model, token, last, cache, width - 1, width)
            continue
        column = torch.tensor([width - 1], device=input_ids.device)
        first = (B, total) not in model._saferlhf_compiled_shapes
        start = time.perf_counter()
        logits = step(model, token, last, cache, column, total)
        if first:  # the first call with a new shape compiled it
            seconds = time.perf_counter() - start
            _COMPILE["seconds"] = _COMPILE.get("seconds", 0.0) + seconds
            model._saferlhf_compiled_shapes.add((B, total))
            log.info("rollout.compile: compiled the decode step for %d rows × %d cache "
                     "columns in %.1f s", B, total, seconds)
    return sequences[:, :width]
