"""The record types every stage consumes: one frozen dataclass per dataset kind (reference §1.1).

A loader (saferlhf.runners.common.data) maps each source format to these. `prompt` is always the raw
user input, not yet templated (saferlhf.runners.common.template formats it): a string for one turn,
or a
tuple of turns for a dialogue (odd length; user, assistant, …, user). `source` names the file or
generator the record came from and `row` is its 1-based row there, so any later error can point a
user back at the exact row. `derived=True` marks labels we derived rather than the dataset's own.
Importable without torch.
"""

from __future__ import annotations

from dataclasses import dataclass

Prompt = str | tuple[str, ...]


@dataclass(frozen=True)
class Supervised:
    """A demonstration: train the policy to answer `prompt` with `response` (SFT)."""

    prompt: Prompt
    response: str
    source: str
    row: int


@dataclass(frozen=True)
class Preference:
    """A helpfulness comparison: `better` was preferred over `worse` (reward model)."""

    prompt: Prompt
    better: str
    worse: str
    source: str
    row: int
    derived: bool = False


@dataclass(frozen=True)
class SafetyPreference:
    """A harmlessness comparison (cost model): `safer` is the less harmful response, and each
    response carries its own safe/unsafe label (the sign terms of the cost loss, reference §4).

    Invariant checked by the loaders (reference §1.3): never `safer` unsafe while `unsafer` safe.
    """

    prompt: Prompt
    safer: str
    unsafer: str
    safer_is_safe: bool
    unsafer_is_safe: bool
    source: str
    row: int
    derived: bool = False


@dataclass(frozen=True)
class SafetyLabelledPreference:
    """A helpfulness comparison whose two responses each carry a safe/unsafe label — one
    PKU-SafeRLHF row read for SafeDPO (`better` by better_response_id, the labels by
    is_response_*_safe). Any combination of labels is valid: SafeDPO reorders the pair itself."""

    prompt: Prompt
    better: str
    worse: str
    better_is_safe: bool
    worse_is_safe: bool
    source: str
    row: int
    derived: bool = False


@dataclass(frozen=True)
class PromptOnly:
    """A prompt to sample from (PPO-Lag rollouts, evaluation, collection)."""

    prompt: Prompt
    source: str
    row: int
    category: str | None = None
    is_harmful: bool | None = None
    derived: bool = False


Record = Supervised | Preference | SafetyPreference | SafetyLabelledPreference | PromptOnly

RECORD_TYPES: dict[str, type] = {
    "supervised": Supervised,
    "preference": Preference,
    "safety_preference": SafetyPreference,
    "prompt_only": PromptOnly,
    "safety_labelled_preference": SafetyLabelledPreference,
}


def prompt_key(prompt: Prompt) -> str:
    """A hashable, order-preserving key for de-duplicating prompts across turns."""
    return prompt if isinstance(prompt, str) else "\x1f".join(prompt)
