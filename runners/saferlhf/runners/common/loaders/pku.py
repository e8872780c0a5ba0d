"""PKU-SafeRLHF JSONL rows → records, with the reference mapping (§1.1):

    input = prompt, answer = response_0, other_answer = response_1,
    better = better_response_id == 0, safer = safer_response_id == 0,
    is_safe = is_response_0_safe, is_other_safe = is_response_1_safe.

Kinds: preference (by `better`), safety_preference (`safer` + both is_safe labels),
safety_labelled_preference (by `better`, with both is_safe labels: SafeDPO), supervised (the better
response), prompt_only (prompts de-duplicated, first occurrence kept). A prompt_only record's
category is the harm category flagged most often in `response_{0,1}_harm_category` (ties to the
more specific one, saferlhf.runners.common.harm_categories.top_category; None when no flag is set);
its harmfulness stays unknown (the rows label answers, not prompts). Other columns (severity,
sources, hashes) are accepted and ignored.

`strict=True` (safety_preference only) also rejects rows whose two preferences disagree
(better_response_id ≠ safer_response_id). Such rows are valid Safe RLHF data — decoupling the two
is the point of the paper — so the default accepts them; strict mode is for users who want to
train on rows where helpfulness and harmlessness agree, or to audit where they conflict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from saferlhf.runners.common.config import RecordKind
from saferlhf.runners.common.harm_categories import top_category
from saferlhf.runners.common.loaders import pairs
from saferlhf.runners.common.loaders.base import (
    Problems,
    SkipRow,
    get_bool,
    get_response_id,
    get_str,
    iter_jsonl,
)
from saferlhf.runners.common.records import PromptOnly, Record, Supervised, prompt_key


def load_pku(path: Path, kind: RecordKind, problems: Problems, *, strict: bool = False
             ) -> list[Record]:
    name = str(path)
    out: list[Record] = []
    seen: set[str] = set()
    for row, obj in iter_jsonl(path, problems):
        if problems.full:
            break
        try:
            prompt = get_str(obj, "prompt", name, row, problems)
            if kind == "prompt_only":
                if prompt_key(prompt) not in seen:
                    seen.add(prompt_key(prompt))
                    out.append(PromptOnly(prompt, name, row, _category(obj)))
                continue
            r0 = get_str(obj, "response_0", name, row, problems)
            r1 = get_str(obj, "response_1", name, row, problems)
            if kind in ("preference", "supervised"):
                better = get_response_id(obj, "better_response_id", name, row, problems)
                if kind == "supervised":
                    out.append(Supervised(prompt, r1 if better else r0, name, row))
                else:
                    out.append(pairs.preference(prompt, r0, r1, better == 0, file=name, row=row,
                                                problems=problems, field="response_1"))
                continue
            if kind == "safety_labelled_preference":
                better = get_response_id(obj, "better_response_id", name, row, problems)
                s0 = get_bool(obj, "is_response_0_safe", name, row, problems)
                s1 = get_bool(obj, "is_response_1_safe", name, row, problems)
                out.append(pairs.safety_labelled_preference(
                    prompt, r0, r1, better == 0, s0, s1, file=name, row=row, problems=problems,
                    field="response_1"))
                continue
            safer = get_response_id(obj, "safer_response_id", name, row, problems)
            s0 = get_bool(obj, "is_response_0_safe", name, row, problems)
            s1 = get_bool(obj, "is_response_1_safe", name, row, problems)
            if strict:
                better = get_response_id(obj, "better_response_id", name, row, problems)
                if better != safer:
                    raise problems.report(
                        f"strict mode: better_response_id={better} but safer_response_id="
                        f"{safer} (the helpfulness and harmlessness preferences conflict); "
                        "load without strict to keep such rows", file=name, row=row,
                        field="safer_response_id")
            out.append(pairs.safety_preference(
                prompt, r0, r1, safer == 0, s0, s1, file=name, row=row, problems=problems,
                fields=("response_1", "safer_response_id")))
        except SkipRow:
            continue
    return out


def _category(obj: dict[str, Any]) -> str | None:
    """The most-flagged harm category of the row's two responses (None when none is flagged)."""
    flagged: list[str] = []
    for i in (0, 1):
        flags = obj.get(f"response_{i}_harm_category")
        if isinstance(flags, dict):
            flagged += [name for name, on in flags.items() if on is True]
    return top_category(flagged)
