"""Oracle labels in PKU-SafeRLHF format, for the collect stage (`labeler: oracle`) and the CLI.

A row carries the published PKU-SafeRLHF label fields (reference §1.1):
`prompt, response_0, response_1, is_response_0_safe, is_response_1_safe, better_response_id,
safer_response_id`, plus our own `response_{0,1}_helpfulness` (the exact helpfulness, so a
consumer can drop helpfulness ties, which carry no preference) and `labeler: "synthetic-oracle"`.

Safer response when both have the same safety label: the one with fewer distinct harmful step
words (a graded "severity", `harm_level`); on equal levels (both safe, or equally harmful) a fair
coin from the caller's rng. The cost model's sign terms carry the signal there; the ranking term
sees no systematic preference.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from saferlhf.runners.common.records import Preference, SafetyPreference
from saferlhf.runners.synthetic.judge import judge
from saferlhf.runners.synthetic.vocab import HARMFUL_TASKS, words

_HARMFUL_WORDS = frozenset(w for t in HARMFUL_TASKS for w in t.steps)


def harm_level(response: str) -> int:
    """Number of distinct harmful step words in a response (0 = safe)."""
    return len(set(words(response)) & _HARMFUL_WORDS)


def oracle_label_pairs(prompt: str, response_a: str, response_b: str, noise: float,
                       rng: random.Random) -> dict[str, Any]:
    """Label one pair exactly, then flip each of the two judgements with probability `noise`.

    Helpfulness: better = higher exact helpfulness (coin on ties). Safety: is_safe per response
    from exact harm; safer = lower harm_level (coin on ties). A safety flip swaps `safer` AND both
    is_safe labels (a confused annotator), so a row never has the safer response labelled unsafe
    while the other is labelled safe.
    """
    ja, jb = judge(prompt, response_a), judge(prompt, response_b)
    if ja.helpfulness != jb.helpfulness:
        better = 0 if ja.helpfulness > jb.helpfulness else 1
    else:
        better = rng.randrange(2)
    la, lb = harm_level(response_a), harm_level(response_b)
    safer = (0 if la < lb else 1) if la != lb else rng.randrange(2)
    safe = [not ja.harmful, not jb.harmful]
    if rng.random() < noise:
        better = 1 - better
    if rng.random() < noise:
        safer = 1 - safer
        safe.reverse()
    return {
        "prompt": prompt,
        "response_0": response_a,
        "response_1": response_b,
        "is_response_0_safe": safe[0],
        "is_response_1_safe": safe[1],
        "better_response_id": better,
        "safer_response_id": safer,
        "response_0_helpfulness": ja.helpfulness,
        "response_1_helpfulness": jb.helpfulness,
        "labeler": "synthetic-oracle",
    }


def write_pku_jsonl(rows: Iterable[dict[str, Any]], path: str | Path) -> int:
    """Write rows as JSON lines (PKU-SafeRLHF layout); returns the number written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def to_pku_row(record: Preference | SafetyPreference, rng: random.Random) -> dict[str, Any]:
    """A generated pair as a PKU-SafeRLHF row: its own label kept, the other axis labelled
    exactly (coin on ties), the two responses placed in a random order."""
    prompt = record.prompt if isinstance(record.prompt, str) else record.prompt[-1]
    if isinstance(record, Preference):
        first, second = record.better, record.worse
    else:
        first, second = record.safer, record.unsafer
    swap = rng.random() < 0.5
    r0, r1 = (second, first) if swap else (first, second)
    row = oracle_label_pairs(prompt, r0, r1, 0.0, rng)
    own = 1 if swap else 0  # where the record's preferred response went
    if isinstance(record, Preference):
        row["better_response_id"] = own
    else:
        row["safer_response_id"] = own
        safe = (record.safer_is_safe, record.unsafer_is_safe)
        row["is_response_0_safe"], row["is_response_1_safe"] = (safe[1], safe[0]) if swap else safe
    return row
