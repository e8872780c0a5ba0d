"""Prompt rows in, sampled token ids out → the `Rollout` that `generate` would have returned.

An engine that samples outside Hugging Face (vLLM) sees each prompt without padding and returns
each response as a list of token ids, EOS included when it stopped there. PPO-Lag, the scorers and
the collectors expect `generate`'s layout: the prompts left-padded to a common width S, the
responses right-padded with the pad token to the longest one, and the reference's attention mask
(pad, unk and everything after the first EOS are 0). These pure functions convert one into the
other, with the same helpers `generate` uses, so the two engines' rollouts cannot drift apart.
"""

from __future__ import annotations

import torch
from saferlhf.runners.common.generation import Rollout, decode_responses, response_mask

SEED_SPAN = 2**31 - 1  # vLLM seeds are Python ints; keep them in a 31-bit range


def unpadded_rows(
    input_ids: torch.Tensor,  # size = (B, S), left-padded
    attention_mask: torch.Tensor,  # size = (B, S)
) -> list[list[int]]:
    """Each prompt's real tokens (the padding dropped), as the engine wants them."""
    return [ids[mask.bool()].tolist() for ids, mask in zip(input_ids, attention_mask, strict=True)]


def row_seeds(seed: int | None, rows: int) -> list[int]:
    """One sampling seed per request row: `seed + i`, or a base drawn from the global torch RNG
    when seed is None (so a resumed trainer, whose RNG state is checkpointed, draws the same).
    One seed per row, not per prompt: requests with equal seeds sample identical responses."""
    if seed is None:
        seed = int(torch.randint(0, SEED_SPAN, (1,)).item())
    return [(seed + i) % SEED_SPAN for i in range(rows)]


def rollout_from_token_ids(
    tokenizer,
    prompt_ids: torch.Tensor,  # size = (B, S), left-padded
    prompt_mask: torch.Tensor,  # size = (B, S)
    responses: list[list[int]],  # B·n sampled responses, prompt-major
    num_return_sequences: int,
) -> Rollout:
    """`Rollout` with sequences (B·n, S + T), T = the longest response, right-padded with pad."""
    n = num_return_sequences
    rows, width = prompt_ids.shape
    if len(responses) != rows * n:
        raise ValueError(f"expected {rows} prompts × {n} samples = {rows * n} responses, "
                         f"got {len(responses)}")
    longest = max((len(r) for r in responses), default=0)
    sequences = torch.full((rows * n, width + longest), tokenizer.pad_token_id, dtype=torch.long)
    sequences[:, :width] = prompt_ids.repeat_interleave(n, dim=0)
    for i, response in enumerate(responses):
        sequences[i, width : width + len(response)] = torch.tensor(response, dtype=torch.long)
    resp_mask = response_mask(
        sequences, width, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, unk_token_id=tokenizer.unk_token_id,
    )  # (B·n, T)
    attention_mask = torch.cat(
        [prompt_mask.long().repeat_interleave(n, dim=0), resp_mask], dim=1)  # (B·n, S + T)
    texts = decode_responses(tokenizer, sequences, attention_mask, width)
    return Rollout(sequences, attention_mask, width, texts)
