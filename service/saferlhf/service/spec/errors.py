"""pydantic errors → `FieldViolation`s a user can act on: dotted field path, YAML line, what was
expected and what was given, and a did-you-mean for misspelt fields."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError
from saferlhf.runners.common.judge_config import KINDS as JUDGE_KINDS
from saferlhf.service.errors import FieldViolation
from saferlhf.service.spec import models as m
from saferlhf.service.spec.models import STAGE_TAGS, JobSpec
from saferlhf.service.spec.yamlmap import Loc, dotted, line_of


def clean_loc(loc: tuple[Any, ...]) -> Loc:
    """Drop the tagged-union markers pydantic inserts (`spec.stages.sft.params.data` → `…sft.data`,
    `…eval.judges.0.llm.model` → `…judges.0.model`) and the model-validator marker."""
    out: list[str | int] = []
    for index, part in enumerate(loc):
        if index == 3 and loc[:2] == ("spec", "stages") and loc[2] in m.USABLE_STAGES \
                and part in STAGE_TAGS:
            continue
        if index >= 2 and loc[index - 2] == "judges" and isinstance(loc[index - 1], int) \
                and part in JUDGE_KINDS:
            continue
        out.append(part if isinstance(part, int) else str(part))
    return tuple(out)


def _unwrap(tp: Any) -> list[Any]:
    """Concrete member types of an annotation (Annotated, Optional and unions unwrapped)."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(tp) for m in _unwrap(arg)]
    return [tp]


def field_names_at(loc: Loc, root: Any = JobSpec) -> set[str]:
    """Field names a model accepts at `loc` (for did-you-mean), walking the spec's types."""
    names: set[str] = set()
    for tp in _unwrap(root):
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if not loc:
                names |= set(tp.model_fields)
            elif isinstance(loc[0], str) and loc[0] in tp.model_fields:
                names |= field_names_at(loc[1:], tp.model_fields[loc[0]].annotation)
        elif loc and typing.get_origin(tp) is list and isinstance(loc[0], int):
            names |= field_names_at(loc[1:], typing.get_args(tp)[0])
        elif loc and typing.get_origin(tp) is dict:
            names |= field_names_at(loc[1:], typing.get_args(tp)[1])
    return names


# What each pattern means, in words (a regex is no help to a user).
PATTERN_HELP = {
    m.DNS1123_LABEL: "lower-case letters, digits and '-', starting and ending with a letter or "
    "digit (a DNS-1123 label)",
    m.DNS1123_SUBDOMAIN: "lower-case letters, digits, '-' and '.' (a DNS-1123 subdomain)",
    m.LABEL_KEY: "a Kubernetes label key ([prefix/]name: letters, digits, '-', '_', '.')",
    m.LABEL_VALUE: "a Kubernetes label value (≤ 63 letters, digits, '-', '_', '.')",
    m.IMAGE_REF: "an image reference like registry.example.com/team/image:tag",
    m.CPU_QUANTITY: 'a CPU quantity like "2", "0.5" or "500m"',
    m.MEMORY_QUANTITY: 'a memory quantity like "8Gi", "512Mi" or "1G"',
    m.METRIC_NAME: "a metric key like eval/harmful_rate",
    m.ARTIFACT_URI: "file://<dir>, pvc://<claim>/<prefix> or s3://<bucket>/<prefix>",
}


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def describe(error: dict[str, Any], loc: Loc) -> str:
    """One error's description: what is wrong, what was given, how to fix it."""
    kind = error["type"]
    message = str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    given = error.get("input")
    if kind == "extra_forbidden":
        if loc[:2] == ("spec", "stages") and len(loc) == 4 and _is_used(error):
            return (f"unknown field {loc[-1]!r}: a stage with `use:` is skipped, so only "
                    "`use` and the overrides (resources, backend, retries, timeout_minutes, "
                    "stall_minutes) may be set")
        names = field_names_at(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), sorted(names), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else (
            f"; expected one of: {', '.join(sorted(names))}" if 0 < len(names) <= 24 else "")
        return f"unknown field {loc[-1]!r}{hint}"
    if kind == "missing":
        return "required field is missing"
    if kind == "string_pattern_mismatch":
        pattern = str((error.get("ctx") or {}).get("pattern"))
        message = f"expected {PATTERN_HELP.get(pattern, f'a string matching {pattern}')}"
    if isinstance(given, str | int | float | bool) or given is None:
        return f"{message}, got {_shown(given)}"
    return message


def _is_used(error: dict[str, Any]) -> bool:
    loc = error["loc"]
    return len(loc) > 3 and loc[2] in m.USABLE_STAGES and loc[3] == "use"


def violations_from(exc: ValidationError, lines: dict[Loc, int]) -> list[FieldViolation]:
    out = []
    for error in exc.errors(include_url=False):
        loc = clean_loc(error["loc"])
        out.append(FieldViolation(dotted(loc), describe(dict(error), loc), line_of(lines, loc)))
    return out
