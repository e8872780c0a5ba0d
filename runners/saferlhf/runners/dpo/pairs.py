"""Records → the (chosen, rejected) pairs a DPO-family objective trains on, tokenised and padded.

`order_pairs` decides, per record, which response is the winner:
- dpo, preference helpfulness: `Preference` records, better ≻ worse;
- dpo, preference harmlessness: `SafetyPreference` records, safer ≻ unsafer;
- safe_dpo: `SafetyLabelledPreference` records through SafeDPO's transformation T
  (saferlhf.runners.dpo.loss.safe_dpo_order): kept, swapped so the safe response wins, or dropped
  when both responses are unsafe.
Each pair keeps its responses' harm flags (after T the winner is always safe), so the loss's own
T is the identity on them. Tokenisation happens once, up front, so a bad row (a response
truncated away, two identical sequences) is reported with its file and row before training.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from saferlhf.runners.common.batching import IGNORE_INDEX, encode_supervised
from saferlhf.runners.common.errors import InvalidInputError
from saferlhf.runners.common.records import (
    Preference,
    Prompt,
    SafetyLabelledPreference,
    SafetyPreference,
    Supervised,
)
from saferlhf.runners.dpo.loss import DROP, SWAP, safe_dpo_order


@dataclass(frozen=True)
class OrderedPair:
    """One training pair in the objective's order, still as text."""

    prompt: Prompt
    chosen: str
    rejected: str
    chosen_unsafe: bool
    rejected_unsafe: bool
    source: str
    row: int


def order_pairs(records: Sequence, objective: str) -> tuple[list[OrderedPair], Counter]:
    """(pairs, counts): counts of kept / swapped / dropped records (SafeDPO's T) — the stage
    reports them, since a dataset whose pairs are mostly both-unsafe trains on little."""
    out: list[OrderedPair] = []
    counts: Counter = Counter()
    for rec in records:
        if objective == "safe_dpo":
            if not isinstance(rec, SafetyLabelledPreference):
                raise TypeError(f"safe_dpo needs SafetyLabelledPreference records, got {rec!r}")
            w_unsafe, l_unsafe = not rec.better_is_safe, not rec.worse_is_safe
            action = safe_dpo_order(w_unsafe, l_unsafe)
            counts[action] += 1
            if action == DROP:
                continue
            if action == SWAP:
                out.append(OrderedPair(rec.prompt, rec.worse, rec.better, l_unsafe, w_unsafe,
                                       rec.source, rec.row))
            else:
                out.append(OrderedPair(rec.prompt, rec.better, rec.worse, w_unsafe, l_unsafe,
                                       rec.source, rec.row))
        elif isinstance(rec, SafetyPreference):  # dpo on harmlessness: the safer one wins
            counts["keep"] += 1
            out.append(OrderedPair(rec.prompt, rec.safer, rec.unsafer, not rec.safer_is_safe,
                                   not rec.unsafer_is_safe, rec.source, rec.row))
        elif isinstance(rec, Preference):  # dpo on helpfulness: safety not modelled
            counts["keep"] += 1
            out.append(OrderedPair(rec.prompt, rec.better, rec.worse, False, False, rec.source,
                                   rec.row))
        else:
            raise TypeError(f"dpo needs Preference or SafetyPreference records, got {rec!r}")
    return out, counts


@dataclass(frozen=True)
class PairSample:
    """A tokenised pair: prompt tokens of each side masked to -100 in its labels."""

    chosen_ids: list[int]
    chosen_labels: list[int]
    rejected_ids: list[int]
    rejected_labels: list[int]
    chosen_unsafe: bool = False
    rejected_unsafe: bool = False
    reference_chosen: float = 0.0  # log π_ref(ỹ_w|x), filled in before training
    reference_rejected: float = 0.0  # log π_ref(ỹ_l|x)


def encode_pairs(pairs: Sequence[OrderedPair], tokenizer, max_length: int) -> list[PairSample]:
    sides = [Supervised(p.prompt, text, p.source, p.row)
             for p in pairs for text in (p.chosen, p.rejected)]
    encoded = encode_supervised(sides, tokenizer, max_length)  # raises with file / row
    out = []
    for i, pair in enumerate(pairs):
        chosen, rejected = encoded[2 * i], encoded[2 * i + 1]
        if chosen.input_ids == rejected.input_ids:
            raise InvalidInputError(
                "the two responses are identical after tokenisation and truncation to "
                f"max_length_tokens={max_length}; a preference needs two different responses",
                file=pair.source, row=pair.row, field="response",
            )
        out.append(PairSample(chosen.input_ids, chosen.labels, rejected.input_ids,
                              rejected.labels, pair.chosen_unsafe, pair.rejected_unsafe))
    return out


def with_reference(samples: Sequence[PairSample], logprobs: torch.Tensor) -> list[PairSample]:
    """`samples` with their reference log-probs, from a (N, 2) [chosen, rejected] tensor."""
    if logprobs.shape != (len(samples), 2):
        raise ValueError(f"expected reference log-probs of shape ({len(samples)}, 2), got "
                         f"{tuple(logprobs.shape)}")
    rows = logprobs.tolist()
    return [replace(s, reference_chosen=c, reference_rejected=r)
            for s, (c, r) in zip(samples, rows, strict=True)]


def _pad(rows: Sequence[Sequence[int]], value: int, width: int) -> torch.Tensor:
    out = torch.full((len(rows), width), value, dtype=torch.long)  # (N, width)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


class PairCollator:
    """Right-pads the chosen and the rejected sides of a batch to one width and stacks them
    (chosen first), so both go through one forward."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad = pad_token_id

    def __call__(self, samples: Sequence[PairSample]) -> dict[str, torch.Tensor]:
        ids = [s.chosen_ids for s in samples] + [s.rejected_ids for s in samples]
        labels = [s.chosen_labels for s in samples] + [s.rejected_labels for s in samples]
        width = max(len(i) for i in ids)
        input_ids = _pad(ids, self.pad, width)  # (2B, L)
        return {
            "input_ids": input_ids,  # (2B, L)
            "attention_mask": _pad([[1] * len(i) for i in ids], 0, width),  # (2B, L)
            "labels": _pad(labels, IGNORE_INDEX, width),  # (2B, L)
            "chosen_unsafe": torch.tensor([s.chosen_unsafe for s in samples]),  # (B,)
            "rejected_unsafe": torch.tensor([s.rejected_unsafe for s in samples]),  # (B,)
            "reference_chosen": torch.tensor([s.reference_chosen for s in samples],
                                             dtype=torch.float32),  # (B,)
            "reference_rejected": torch.tensor([s.reference_rejected for s in samples],
                                               dtype=torch.float32),  # (B,)
        }
