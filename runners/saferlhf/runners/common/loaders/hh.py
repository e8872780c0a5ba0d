"""Anthropic HH-RLHF dialogues (`{chosen, rejected}`, .jsonl or .jsonl.gz) → records.

Each dialogue is "\\n\\nHuman: … \\n\\nAssistant: …". It is split at the LAST "\\n\\nAssistant:":
the text before is the prompt, parsed into turns (user, assistant, …, user; a one-turn prompt is a
plain string), and the text after (stripped) is the response. Kinds: preference (better = chosen),
supervised (the chosen response), prompt_only (de-duplicated). A row whose chosen and rejected
dialogues differ before their last Assistant turn (5 rows of harmless-base test) is a different
conversation, not a comparison: it is skipped and counted in a warning, and so is a dialogue whose
turns before the last Assistant turn do not end on a Human turn (a "  Human:" glued into an
Assistant turn upstream). Consecutive turns of one speaker are merged into one turn. Text that is
not a dialogue at all (no Assistant turn, text before the first Human turn) is an error.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from saferlhf.runners.common.config import RecordKind
from saferlhf.runners.common.loaders import pairs
from saferlhf.runners.common.loaders.base import Problems, SkipRow, get_str, iter_jsonl
from saferlhf.runners.common.records import Prompt, PromptOnly, Record, Supervised, prompt_key

log = logging.getLogger(__name__)

HUMAN = "\n\nHuman:"
ASSISTANT = "\n\nAssistant:"
_TURN = re.compile(r"\n\n(Human|Assistant):")


class TurnOrderError(ValueError):
    """The turns before the last Assistant turn do not end on a Human turn (upstream rows that
    glue "  Human:" into an Assistant turn without the "\n\n" separator)."""


def split_dialogue(text: str) -> tuple[Prompt, str]:
    """(prompt turns, final response) of one HH dialogue; ValueError if it is not one."""
    cut = text.rfind(ASSISTANT)
    if cut < 0:
        raise ValueError('no "\\n\\nAssistant:" turn')
    head, response = text[:cut], text[cut + len(ASSISTANT):].strip()
    parts = _TURN.split(head)
    # parts = [preamble, speaker, text, speaker, text, ...]
    if parts[0].strip():
        raise ValueError('text before the first "\\n\\nHuman:" turn')
    # Consecutive turns of one speaker (8 rows of harmless-base test) are merged into one turn.
    speakers: list[str] = []
    texts: list[str] = []
    for speaker, turn in zip(parts[1::2], parts[2::2], strict=True):
        if speakers and speakers[-1] == speaker:
            texts[-1] = f"{texts[-1]}\n\n{turn.strip()}"
        else:
            speakers.append(speaker)
            texts.append(turn.strip())
    if not speakers or speakers[0] != "Human":
        raise ValueError('expected the dialogue to start with a "\n\nHuman:" turn')
    if speakers[-1] != "Human":
        raise TurnOrderError("turns before the last Assistant turn must end on a Human turn")
    prompt: Prompt = texts[0] if len(texts) == 1 else tuple(texts)
    return prompt, response


def load_hh(path: Path, kind: RecordKind, problems: Problems) -> list[Record]:
    name = str(path)
    out: list[Record] = []
    seen: set[str] = set()
    skipped = 0
    for row, obj in iter_jsonl(path, problems):
        if problems.full:
            break
        try:
            chosen = get_str(obj, "chosen", name, row, problems)
            try:
                prompt, good = split_dialogue(chosen)
            except TurnOrderError:
                skipped += 1
                continue
            except ValueError as e:
                raise problems.report(f"not an HH dialogue: {e}", file=name, row=row,
                                      field="chosen") from None
            if kind == "prompt_only":
                if prompt_key(prompt) not in seen:
                    seen.add(prompt_key(prompt))
                    out.append(PromptOnly(prompt, name, row))
                continue
            if kind == "supervised":
                out.append(Supervised(prompt, good, name, row))
                continue
            rejected = get_str(obj, "rejected", name, row, problems)
            try:
                other_prompt, bad = split_dialogue(rejected)
            except TurnOrderError:
                skipped += 1
                continue
            except ValueError as e:
                raise problems.report(f"not an HH dialogue: {e}", file=name, row=row,
                                      field="rejected") from None
            if other_prompt != prompt:
                skipped += 1
                continue
            out.append(pairs.preference(prompt, good, bad, True, file=name, row=row,
                                        problems=problems, field="rejected"))
        except SkipRow:
            continue
    if skipped:
        log.warning("%s: skipped %d rows whose chosen and rejected dialogues differ before the "
                    "last Assistant turn or whose turns do not end on a Human turn", name, skipped)
    return out
