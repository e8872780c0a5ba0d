"""Sample k responses per prompt from a policy, and pair them for labelling.

Shared by the collect runner (round data) and the evaluate runner (answers to judge). Prompts are
raw user inputs; they are templated here (reference §1.2) and generated in batches of about
`batch_size` rows by the stage's rollout engine (`generate`, or vLLM). Each batch draws from its
own seed
(`seed + batch index`), so a run is reproducible and independent of the global RNG.

Pairing (collect): the k samples of a prompt form ⌊k/2⌋ disjoint pairs (0,1), (2,3), …, so every
response is labelled once; with an odd k the last sample is unused. A pair whose two responses
are identical is dropped — a preference between identical texts carries no signal and the
reference's loader raises on it (reference §1.3) — and so is a pair with an empty response.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from saferlhf.runners.common.records import Prompt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pair:
    prompt_index: int
    prompt: str
    response_0: str
    response_1: str


def context_budget(context: int | None, max_new_tokens: int) -> tuple[int, int | None]:
    """(max_new_tokens, max_prompt_tokens) that fit a context window of `context` positions.

    A tiny model has a short context (128 positions by default); asking it for more new tokens
    than fit would index past its position table, so the budget is halved and logged instead.
    """
    if context is None:
        return max_new_tokens, None
    if max_new_tokens > context // 2:
        log.warning("max_new_tokens %d does not fit the %d-token context; using %d",
                    max_new_tokens, context, context // 2)
        max_new_tokens = context // 2
    return max_new_tokens, context - max_new_tokens


def sample_responses(
    engine,  # RolloutEngine
    tokenizer,
    prompts: Sequence[Prompt],
    *,
    samples_per_prompt: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    batch_size: int = 32,
    seed: int = 42,
) -> list[list[str]]:
    """responses[i][j] = sample j for prompt i (raw prompts, templated here)."""
    from saferlhf.runners.common.template import format_prompt

    new_tokens, prompt_tokens = context_budget(engine.context_size, max_new_tokens)
    eos = tokenizer.eos_token or ""
    per_batch = max(1, batch_size // samples_per_prompt)
    out: list[list[str]] = []
    for batch_index, start in enumerate(range(0, len(prompts), per_batch)):
        chunk = [format_prompt(p, eos) for p in prompts[start : start + per_batch]]
        rollout = engine.generate(
            chunk, max_new_tokens=new_tokens, temperature=temperature,
            num_return_sequences=samples_per_prompt, seed=seed + batch_index,
            max_prompt_tokens=prompt_tokens,
        )
        texts = rollout.response_texts  # prompt-major: row i·k + j
        for i in range(len(chunk)):
            out.append(list(texts[i * samples_per_prompt : (i + 1) * samples_per_prompt]))
    return out


def pair_samples(prompts: Sequence[str], responses: Sequence[Sequence[str]]
                 ) -> tuple[list[Pair], dict[str, int]]:
    """Disjoint pairs per prompt (module docstring) and how many were dropped, by reason:
    `identical` responses, or an `empty` one (a policy that ends at once; no preference loader
    accepts an empty response, so the next stage would reject the whole file)."""
    pairs, dropped = [], {"identical": 0, "empty": 0}
    for index, (prompt, samples) in enumerate(zip(prompts, responses, strict=True)):
        for j in range(0, len(samples) - 1, 2):
            a, b = samples[j], samples[j + 1]
            if not a.strip() or not b.strip():
                dropped["empty"] += 1
            elif a == b:
                dropped["identical"] += 1
            else:
                pairs.append(Pair(index, prompt, a, b))
    return pairs, dropped
