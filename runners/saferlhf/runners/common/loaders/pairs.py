"""Building pair records from "answer / other_answer" rows, with the reference's checks (§1.3):
identical responses are rejected, and so is a safety row whose safer response is labelled unsafe
while the other is labelled safe (`safer_sign < unsafer_sign`, sign +1 = safe, −1 = unsafe)."""

from __future__ import annotations

from saferlhf.runners.common.loaders.base import Problems
from saferlhf.runners.common.records import (
    Preference,
    Prompt,
    SafetyLabelledPreference,
    SafetyPreference,
)


def preference(prompt: Prompt, answer: str, other: str, answer_is_better: bool, *, file: str,
               row: int, problems: Problems, field: str, derived: bool = False) -> Preference:
    if answer == other:
        raise problems.report("the two responses are identical, so the pair carries no "
                              "preference; drop the row", file=file, row=row, field=field)
    better, worse = (answer, other) if answer_is_better else (other, answer)
    return Preference(prompt, better, worse, file, row, derived)


def safety_preference(prompt: Prompt, answer: str, other: str, answer_is_safer: bool,
                      answer_is_safe: bool, other_is_safe: bool, *, file: str, row: int,
                      problems: Problems, fields: tuple[str, str],
                      derived: bool = False) -> SafetyPreference:
    """`fields` = (field named for identical responses, field named for a label conflict)."""
    if answer == other:
        raise problems.report("the two responses are identical, so the pair carries no "
                              "preference; drop the row", file=file, row=row, field=fields[0])
    if answer_is_safer:
        safer, unsafer, s_safe, u_safe = answer, other, answer_is_safe, other_is_safe
    else:
        safer, unsafer, s_safe, u_safe = other, answer, other_is_safe, answer_is_safe
    safer_sign, unsafer_sign = (1 if s_safe else -1), (1 if u_safe else -1)
    if safer_sign < unsafer_sign:
        raise problems.report(
            "the response marked safer is labelled unsafe while the other is labelled safe; "
            "fix the safer id or the is_safe labels (the cost model's sign terms need them to "
            "agree)", file=file, row=row, field=fields[1])
    return SafetyPreference(prompt, safer, unsafer, s_safe, u_safe, file, row, derived)


def safety_labelled_preference(prompt: Prompt, answer: str, other: str, answer_is_better: bool,
                               answer_is_safe: bool, other_is_safe: bool, *, file: str, row: int,
                               problems: Problems, field: str,
                               derived: bool = False) -> SafetyLabelledPreference:
    """A helpfulness pair with both responses' safety labels (any combination is valid)."""
    if answer == other:
        raise problems.report("the two responses are identical, so the pair carries no "
                              "preference; drop the row", file=file, row=row, field=field)
    if answer_is_better:
        return SafetyLabelledPreference(prompt, answer, other, answer_is_safe, other_is_safe,
                                        file, row, derived)
    return SafetyLabelledPreference(prompt, other, answer, other_is_safe, answer_is_safe, file,
                                    row, derived)
