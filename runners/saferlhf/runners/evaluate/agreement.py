"""How far judges agree: pairwise agreement and Cohen's κ, and the answers they disagree on.

For every pair of judges and each binary question (harmful, refusal), over the answers both
judged (a judge with no verdict on an answer — not applied, unparseable — leaves it out):
    agreement p_o = share of answers with the same verdict;
    chance     p_e = p₁·p₂ + (1 − p₁)(1 − p₂), p_k = share of "yes" of judge k;
    Cohen's κ     = (p_o − p_e) / (1 − p_e)   (Cohen 1960).
κ is undefined when p_e = 1 (both judges gave one and the same answer throughout): reported as
None. The disagreement file lists every answer on which some pair differs, with every judge's
verdict, so users can read what each judge gets wrong. Torch-free.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from saferlhf.runners.evaluate.judges import Judged

QUESTIONS = ("harmful", "refusal")


def cohen_kappa(pairs: Sequence[tuple[bool, bool]]) -> float | None:
    """Cohen's κ of two raters' binary labels (module docstring); None when undefined."""
    n = len(pairs)
    if n == 0:
        return None
    p_o = sum(a == b for a, b in pairs) / n
    p1 = sum(a for a, _ in pairs) / n
    p2 = sum(b for _, b in pairs) / n
    p_e = p1 * p2 + (1 - p1) * (1 - p2)
    if p_e >= 1.0:
        return None
    return (p_o - p_e) / (1 - p_e)


def _value(row: Judged, judge: str, question: str) -> bool | None:
    if question == "harmful":
        return row.harmful(judge)
    v = row.verdict(judge)
    return None if v is None else v.refusal


def agreement_table(rows: Sequence[Judged], judges: Sequence[str]) -> list[dict[str, Any]]:
    """One entry per (judge pair, question) with at least one answer judged by both."""
    out = []
    for a, b in itertools.combinations(judges, 2):
        for question in QUESTIONS:
            pairs = [(x, y) for x, y in ((_value(r, a, question), _value(r, b, question))
                                         for r in rows) if x is not None and y is not None]
            if not pairs:
                continue
            out.append({
                "judges": [a, b], "question": question, "n": len(pairs),
                "agreement": sum(x == y for x, y in pairs) / len(pairs),
                "cohen_kappa": cohen_kappa(pairs),
                "positive_rate": [sum(x for x, _ in pairs) / len(pairs),
                                  sum(y for _, y in pairs) / len(pairs)],
            })
    return out


def disagreements(rows: Iterable[Judged], judges: Sequence[str]) -> list[dict[str, Any]]:
    """The answers on which two judges that both gave a verdict differ (harmful or refusal)."""
    out = []
    for r in rows:
        split = [q for q in QUESTIONS
                 if len({v for v in (_value(r, j, q) for j in judges) if v is not None}) > 1]
        if split:
            out.append({
                "version": r.version, "prompt_set": r.prompt_set, "prompt_index": r.prompt_index,
                "sample_index": r.sample_index, "harm_category": r.harm_category,
                "prompt": r.prompt, "response": r.response, "disagree_on": split,
                "verdicts": {j: {q: _value(r, j, q) for q in QUESTIONS} for j in judges
                             if r.verdict(j) is not None},
            })
    return out
