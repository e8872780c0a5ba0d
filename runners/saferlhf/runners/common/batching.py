"""Tokenise records into training samples and pad them into batches (reference §1.3).

Tokenisation happens once, up front, so every bad row (identical responses after truncation, an
empty response) is reported before training starts, with its source file and row. Collators
right-pad (the training layout); a score read at the last mask-1 token is the EOS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from saferlhf.runners.common.errors import InvalidInputError
from saferlhf.runners.common.records import Preference, SafetyPreference, Supervised
from saferlhf.runners.common.template import format_prompt, format_training_text

IGNORE_INDEX = -100


def _encode(tokenizer, text: str, max_length: int) -> list[int]:
    return tokenizer(text, truncation=True, max_length=max_length)["input_ids"]


@dataclass(frozen=True)
class SupervisedSample:
    input_ids: list[int]
    labels: list[int]  # prompt tokens = -100


def encode_supervised(records: Sequence[Supervised], tokenizer, max_length: int):
    """Labels = input_ids with the prompt's tokens masked (length of the separately tokenised
    prompt). A row whose response is truncated away entirely is an input error."""
    eos = tokenizer.eos_token or ""  # an encoder (BERT) has none: its [SEP] ends the text
    out = []
    for rec in records:
        prompt = format_prompt(rec.prompt, eos)
        ids = _encode(tokenizer, format_training_text(prompt, rec.response, eos), max_length)
        n_prompt = len(_encode(tokenizer, prompt, max_length))
        if n_prompt >= len(ids):
            raise InvalidInputError(
                f"no response token left after truncation to max_length_tokens={max_length} "
                f"(prompt uses {n_prompt} tokens); shorten the prompt or raise max_length_tokens",
                file=rec.source, row=rec.row, field="response",
            )
        labels = [IGNORE_INDEX] * n_prompt + ids[n_prompt:]
        out.append(SupervisedSample(ids, labels))
    return out


@dataclass(frozen=True)
class PairSample:
    """A preference pair: `first` is the better (RM) / safer (CM) sequence."""

    first_ids: list[int]
    second_ids: list[int]
    first_safe: bool = True
    second_safe: bool = True


def encode_preferences(records: Sequence[Preference], tokenizer, max_length: int):
    return [
        _pair(tokenizer, rec, rec.better, rec.worse, "better", max_length) for rec in records
    ]


def encode_safety_preferences(records: Sequence[SafetyPreference], tokenizer, max_length: int):
    out = []
    for rec in records:
        if not rec.safer_is_safe and rec.unsafer_is_safe:
            raise InvalidInputError(
                "the safer response is labelled unsafe while the other is labelled safe; "
                "fix the safer/is_safe labels of this row",
                file=rec.source, row=rec.row, field="safer",
            )
        pair = _pair(tokenizer, rec, rec.safer, rec.unsafer, "safer", max_length)
        out.append(PairSample(pair.first_ids, pair.second_ids,
                              rec.safer_is_safe, rec.unsafer_is_safe))
    return out


def _pair(tokenizer, rec, first: str, second: str, field: str, max_length: int) -> PairSample:
    eos = tokenizer.eos_token or ""
    prompt = format_prompt(rec.prompt, eos)
    a = _encode(tokenizer, format_training_text(prompt, first, eos), max_length)
    b = _encode(tokenizer, format_training_text(prompt, second, eos), max_length)
    if a == b:
        raise InvalidInputError(
            "the two responses are identical after tokenisation and truncation to "
            f"max_length_tokens={max_length}; a preference needs two different responses",
            file=rec.source, row=rec.row, field=field,
        )
    return PairSample(a, b)


def _pad(seqs: Sequence[Sequence[int]], value: int, length: int | None = None) -> torch.Tensor:
    width = length or max(len(s) for s in seqs)
    out = torch.full((len(seqs), width), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out


def _mask(seqs: Sequence[Sequence[int]], length: int) -> torch.Tensor:
    out = torch.zeros((len(seqs), length), dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = 1
    return out


class SupervisedCollator:
    def __init__(self, pad_token_id: int) -> None:
        self.pad = pad_token_id

    def __call__(self, samples: Sequence[SupervisedSample]) -> dict[str, torch.Tensor]:
        ids = [s.input_ids for s in samples]
        width = max(len(s) for s in ids)
        return {
            "input_ids": _pad(ids, self.pad, width),  # (B, L)
            "attention_mask": _mask(ids, width),  # (B, L)
            "labels": _pad([s.labels for s in samples], IGNORE_INDEX, width),  # (B, L)
        }


class PairCollator:
    """Right-pads both sides of every pair jointly (one width), so token-wise spans line up."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad = pad_token_id

    def __call__(self, samples: Sequence[PairSample]) -> dict[str, torch.Tensor]:
        first = [s.first_ids for s in samples]
        second = [s.second_ids for s in samples]
        width = max(max(len(s) for s in first), max(len(s) for s in second))
        return {
            "first_input_ids": _pad(first, self.pad, width),  # (B, L)
            "first_attention_mask": _mask(first, width),  # (B, L)
            "second_input_ids": _pad(second, self.pad, width),  # (B, L)
            "second_attention_mask": _mask(second, width),  # (B, L)
            "first_is_safe": torch.tensor([s.first_safe for s in samples]),  # (B,)
            "second_is_safe": torch.tensor([s.second_safe for s in samples]),  # (B,)
        }
