"""The reference prompt template (reference §1.2), exactly.

    BEGINNING OF CONVERSATION: USER: {input} ASSISTANT:{response}{eos}

There is no space after `ASSISTANT:` (the Beaver checkpoints were trained that way). A multi-turn
prompt is BEGIN, then `USER: {u} ASSISTANT:` per user turn and `{a}{eos}` per assistant turn,
ending at the final `ASSISTANT:`. Training text appends EOS as a literal string; the tokenizer turns
it into the EOS id. Importable without torch.
"""

from __future__ import annotations

from collections.abc import Sequence

PROMPT_BEGIN = "BEGINNING OF CONVERSATION: "
PROMPT_USER = "USER: {input} "
PROMPT_ASSISTANT = "ASSISTANT:"
PROMPT_INPUT = PROMPT_BEGIN + PROMPT_USER + PROMPT_ASSISTANT


def format_prompt(input: str | Sequence[str], eos_token: str) -> str:  # noqa: A002
    """Template a raw user input (one turn) or a dialogue (user, assistant, …, user turns).

    >>> format_prompt("hi", "</s>")
    'BEGINNING OF CONVERSATION: USER: hi ASSISTANT:'
    """
    if isinstance(input, str):
        return PROMPT_INPUT.format(input=input)
    turns = list(input)
    if len(turns) % 2 != 1:
        raise ValueError(
            "a dialogue prompt needs an odd number of turns ending on a user turn, "
            f"got {len(turns)}"
        )
    parts = [PROMPT_BEGIN]
    for i, turn in enumerate(turns):
        if i % 2 == 0:
            parts.append(PROMPT_USER.format(input=turn) + PROMPT_ASSISTANT)
        else:
            parts.append(turn + eos_token)
    return "".join(parts)


def format_training_text(prompt: str, response: str, eos_token: str) -> str:
    """Formatted prompt + response + EOS (literal). `prompt` is already templated."""
    return prompt + response + eos_token


def split_prompt_response(text: str, eos_token: str | None = None) -> tuple[str, str]:
    """Split a full text at the LAST `ASSISTANT:` into (prompt incl. the marker, response).

    A trailing `eos_token`, when given, is stripped from the response.
    """
    cut = text.rfind(PROMPT_ASSISTANT)
    if cut < 0:
        raise ValueError(f"no {PROMPT_ASSISTANT!r} in text; is it formatted with the template?")
    cut += len(PROMPT_ASSISTANT)
    prompt, response = text[:cut], text[cut:]
    if eos_token and response.endswith(eos_token):
        response = response[: -len(eos_token)]
    return prompt, response
