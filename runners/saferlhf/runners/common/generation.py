"""Sampling responses from a causal LM on left-padded prompts (reference §5.2).

Shared by PPO-Lagrangian (rollouts), evaluation and collection. Uses Hugging Face `generate` with
its KV cache; with left padding the position ids must come from the attention mask (HF derives them
that way during generation; `position_ids_from_mask` does the same for our own forward passes).

The rollout attention mask follows the reference: a token counts iff it is not padding and not the
unknown token. We also stop counting after the first EOS of a response, so the mask is right even
when a tokenizer pads with its EOS token (GPT-2 style).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rollout:
    """Prompts and sampled responses, left-padded prompt + right-padded response.

    sequences:      (B, L) token ids; columns [0, S) are the prompt, [S, L) the response.
    attention_mask: (B, L) 1 for real tokens (pad, unk and everything after EOS are 0).
    prompt_width:   S, the padded prompt width.
    response_texts: B decoded responses (up to EOS, special tokens skipped).
    """

    sequences: torch.Tensor  # size = (B, L), long
    attention_mask: torch.Tensor  # size = (B, L), long
    prompt_width: int
    response_texts: list[str]

    @property
    def response_lengths(self) -> torch.Tensor:  # size = (B,)
        """Number of counted response tokens (EOS included) per row."""
        return self.attention_mask[:, self.prompt_width :].sum(dim=-1)


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding: p_t = (Σ_{u≤t} m_u) − 1, and 0 on pad positions.

    attention_mask: (B, L) → (B, L) long. Matches HF `generate`, so a forward pass over a
    rollout sees the same positions as the sampling did (GPT-2 / LLaMA otherwise use arange and
    shift every left-padded row).
    """
    mask = attention_mask.long()
    return (mask.cumsum(dim=-1) - 1).clamp(min=0).masked_fill(mask == 0, 0)


def response_mask(
    sequences: torch.Tensor,  # size = (B, L)
    prompt_width: int,
    *,
    eos_token_id: int | None,
    pad_token_id: int | None,
    unk_token_id: int | None,
) -> torch.Tensor:  # size = (B, L - S)
    """1 for response tokens up to and including the first EOS, excluding pad and unk tokens."""
    response = sequences[:, prompt_width:]
    keep = torch.ones_like(response, dtype=torch.bool)
    if eos_token_id is not None:
        is_eos = response == eos_token_id
        # positions strictly after the first EOS: an EOS occurred at an earlier column
        after_eos = (is_eos.long().cumsum(dim=-1) - is_eos.long()) > 0
        keep &= ~after_eos
    if pad_token_id is not None and pad_token_id != eos_token_id:
        keep &= response != pad_token_id
    if unk_token_id is not None:
        keep &= response != unk_token_id
    return keep.long()


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def _left_padding(tokenizer) -> Iterator[None]:
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        yield
    finally:
        tokenizer.padding_side = side


def tokenize_prompts(
    tokenizer, prompts: list[str], *, max_prompt_tokens: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompt ids and mask, each (B, S). Long prompts keep their end (the template's
    `ASSISTANT:`), i.e. they are truncated on the left."""
    if tokenizer.pad_token_id is None:
        raise ValueError(
            "the tokenizer has no pad token; build the policy with saferlhf.runners.common.models, "
            "which adds one, or set tokenizer.pad_token"
        )
    kwargs = {}
    if max_prompt_tokens is not None:
        kwargs = {"truncation": True, "max_length": max_prompt_tokens}
    side = tokenizer.truncation_side
    tokenizer.truncation_side = "left"
    try:
        with _left_padding(tokenizer):
            enc = tokenizer(prompts, return_tensors="pt", padding=True, **kwargs)
    finally:
        tokenizer.truncation_side = side
    return enc["input_ids"], enc["attention_mask"]


@torch.no_grad()
def context_size(model) -> int | None:
    """The model's position limit (GPT-2 `n_positions`, LLaMA `max_position_embeddings`)."""
    config = getattr(model, "config", None)
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def fit_new_tokens(model, prompt_width: int, max_new_tokens: int) -> int:
    """`max_new_tokens`, lowered so prompt + response stay inside the model's positions (past
    them a learned position embedding has no row and generation crashes mid-batch)."""
    limit = context_size(model)
    if limit is None or prompt_width + max_new_tokens <= limit:
        return max_new_tokens
    room = limit - prompt_width
    if room <= 0:
        raise ValueError(
            f"prompts of {prompt_width} tokens leave no room to generate in a model of {limit} "
            "positions; shorten the prompts or use a model with more positions "
            "(model.max_position_embeddings)"
        )
    log.warning("max_new_tokens %d lowered to %d: prompts of %d tokens in a %d-position model",
                max_new_tokens, room, prompt_width, limit)
    return room


def generate(
    model,
    tokenizer,
    prompts: list[str],
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    num_return_sequences: int = 1,
    seed: int | None = None,
    do_sample: bool = True,
    synced_gpus: bool = False,
    max_prompt_tokens: int | None = None,
    decode: str = "auto",
    compile: bool = False,
) -> Rollout:
    """Sample `num_return_sequences` responses per (already templated) prompt.

    Rows come out prompt-major: row i·n + j is sample j of prompt i. `seed` makes the draw
    reproducible without touching the global RNG; None uses (and advances) the global torch RNG,
    which is what a resumable trainer wants. `synced_gpus=True` is required under ZeRO-3.
    `decode`: `auto` samples with the static-cache loop of `fast_decode` where it applies (the
    builtin families), else with Hugging Face `generate`; `hf` always uses `generate`. `compile`
    compiles the loop's decode step (fast_decode).
    """
    if not prompts:
        raise ValueError("generate() needs at least one prompt")
    device = next(model.parameters()).device
    input_ids, prompt_mask = tokenize_prompts(
        tokenizer, prompts, max_prompt_tokens=max_prompt_tokens
    )
    input_ids, prompt_mask = input_ids.to(device), prompt_mask.to(device)
    width = input_ids.shape[1]
    max_new_tokens = fit_new_tokens(model, width, max_new_tokens)
    was_training = model.training
    model.eval()
    sample_kwargs = (
        {"temperature": temperature, "top_p": top_p, "top_k": 0} if do_sample else {}
    )
    try:
        with _seeded(seed):
            fast = _sample_fast(
                model, input_ids, prompt_mask, decode=decode, compile=compile,
                synced_gpus=synced_gpus, max_new_tokens=max_new_tokens, temperature=temperature,
                top_p=top_p, repetition_penalty=repetition_penalty,
                num_return_sequences=num_return_sequences, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id, do_sample=do_sample,
            )
            sequences = fast if fast is not None else model.generate(
                input_ids=input_ids,
                attention_mask=prompt_mask,
                max_new_tokens=max_new_tokens,
                do_sample=do_sample,
                repetition_penalty=repetition_penalty,
                num_return_sequences=num_return_sequences,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
                bos_token_id=tokenizer.bos_token_id,
                synced_gpus=synced_gpus,
                use_cache=True,
                **sample_kwargs,
            )
    finally:
        model.train(was_training)
    prompt_mask = prompt_mask.repeat_interleave(num_return_sequences, dim=0)
    resp_mask = response_mask(
        sequences,
        width,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        unk_token_id=tokenizer.unk_token_id,
    )
    attention_mask = torch.cat([prompt_mask.long(), resp_mask], dim=1)
    texts = decode_responses(tokenizer, sequences, attention_mask, width)
    return Rollout(sequences, attention_mask, width, texts)


def _sample_fast(model, input_ids, prompt_mask, *, decode: str, compile: bool,
                 synced_gpus: bool, **kwargs) -> torch.Tensor | None:
    """The static-cache loop's sequences, or None where `generate` must sample instead."""
    if decode not in ("auto", "hf"):
        raise ValueError(f"decode must be auto or hf, got {decode!r}")
    if decode == "hf":
        return None
    from saferlhf.runners.common import fast_decode

    reason = fast_decode.unsupported_reason(model, synced_gpus=synced_gpus)
    if reason is not None:
        log.debug("decode: Hugging Face generate (%s)", reason)
        return None
    return fast_decode.sample(model, input_ids, prompt_mask, compile=compile, **kwargs)


def decode_responses(
    tokenizer,
    sequences: torch.Tensor,  # size = (B, L)
    attention_mask: torch.Tensor,  # size = (B, L)
    prompt_width: int,
) -> list[str]:
    """The counted response tokens of each row, decoded without special tokens."""
    out = []
    responses, masks = sequences[:, prompt_width:], attention_mask[:, prompt_width:]
    for ids, mask in zip(responses, masks, strict=True):
        out.append(tokenizer.decode(ids[mask.bool()].tolist(), skip_special_tokens=True))
    return out


def token_log_probs(
    model,
    sequences: torch.Tensor,  # size = (B, L)
    attention_mask: torch.Tensor,  # size = (B, L)
    first_action: int = 0,
) -> torch.Tensor:  # size = (B, L - 1 - first_action)
    """ℓ_t = log π(x_{t+1} | x_{≤t}) for the actions t = first_action … L−2 (reference §5.3);
    positions from the mask.

    Runs the model (with grad if grad is enabled); a pure gather does the rest. With
    `first_action` > 0 the LM head and the log-softmax run only from that position on (HF
    `logits_to_keep`, where the model takes it): the same values, without the prompt's logits.
    """
    kwargs = {}
    if first_action > 0 and _takes_logits_to_keep(model):
        kwargs["logits_to_keep"] = sequences.shape[1] - first_action
    logits = model(
        input_ids=sequences,
        attention_mask=attention_mask,
        position_ids=position_ids_from_mask(attention_mask),
        use_cache=False,
        **kwargs,
    ).logits  # (B, L or L − first_action, V)
    logits = logits[:, -(sequences.shape[1] - first_action):]  # positions first_action … L−1
    return gather_log_probs(logits[:, :-1].float(), sequences[:, first_action + 1 :])


def _takes_logits_to_keep(model) -> bool:
    import inspect

    from saferlhf.runners.common.models import unwrap

    bare = unwrap(model)
    bare = getattr(bare, "get_base_model", lambda: bare)()  # a PEFT wrapper passes it through
    return "logits_to_keep" in inspect.signature(bare.forward).parameters


def gather_log_probs(
    logits: torch.Tensor,  # size = (B, T, V)
    labels: torch.Tensor,  # size = (B, T)
) -> torch.Tensor:  # size = (B, T)
    """log softmax(logits)[labels], computed stably."""
    log_probs = torch.log_softmax(logits, dim=-1)
    return log_probs.gather(dim=-1, index=labels.unsqueeze(-1)).squeeze(-1)
