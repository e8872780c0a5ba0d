"""Load any `DataSource` as records (saferlhf.runners.common.records), or validate it without
raising.

    load_records(source, kind, seed=42)  -> list[Record]   # raises InvalidInputError on a bad row
    validate_source(source, kind)        -> list[str]      # every problem found, never raises

File formats: pku_saferlhf, hh_rlhf, xstest, safe_rlhf_eval, advbench, harmbench, strongreject,
jailbreakbench, jsonl (under saferlhf.runners.common.loaders; the red-team suites in
prompts.py). Formats that generate their rows register through saferlhf.runners.common.formats
(the synthetic benchmark does). Every error names the file, the 1-based row and the field.
Records keep file order; stages that want a shuffled order call `shuffled(records, seed)`, and
`split_train_eval` carves a held-out share with a seed.
`hub:` sources need network access, which these runners never use: they are a clear error.
Importable without torch (the service validates specs with it).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from saferlhf.runners.common import formats
from saferlhf.runners.common.config import DataSource, RecordKind
from saferlhf.runners.common.errors import InvalidInputError
from saferlhf.runners.common.loaders.base import Problems, require_file
from saferlhf.runners.common.loaders.hh import load_hh
from saferlhf.runners.common.loaders.jsonl import load_jsonl
from saferlhf.runners.common.loaders.pku import load_pku
from saferlhf.runners.common.loaders.prompts import (
    load_advbench,
    load_harmbench,
    load_jailbreakbench,
    load_safe_rlhf_eval,
    load_strongreject,
)
from saferlhf.runners.common.loaders.xstest import load_xstest
from saferlhf.runners.common.records import Record

RECORD_KINDS: tuple[str, ...] = ("supervised", "preference", "safety_preference", "prompt_only",
                                 "safety_labelled_preference")
HUB_MESSAGE = "hub datasets need network access; download it and give `path:`"
# Which kinds each file format can produce (anything else is a clear error before reading the
# file). Formats that generate their rows (the synthetic benchmark) register in `formats`.
FILE_FORMAT_KINDS: dict[str, tuple[str, ...]] = {
    "pku_saferlhf": RECORD_KINDS,
    "hh_rlhf": ("supervised", "preference", "prompt_only"),
    "xstest": ("preference", "safety_preference", "prompt_only"),
    "safe_rlhf_eval": ("prompt_only",),
    "advbench": ("prompt_only",),
    "harmbench": ("prompt_only",),
    "strongreject": ("prompt_only",),
    "jailbreakbench": ("prompt_only",),
    "jsonl": RECORD_KINDS,
}
_FOLDER_OK = ("xstest", "safe_rlhf_eval")

T = TypeVar("T")


def format_kinds(name: str) -> tuple[str, ...] | None:
    """The record kinds a format can give; None for an unknown format."""
    if name in FILE_FORMAT_KINDS:
        return FILE_FORMAT_KINDS[name]
    generated = formats.lookup(name)
    return generated.kinds if generated is not None else None


def known_formats() -> list[str]:
    return [*FILE_FORMAT_KINDS, *formats.registered()]


def quick_check(source: DataSource, kind: str) -> str | None:
    """The cheap submit-time check of a generated format (no rows made); None for file formats
    or when it finds nothing."""
    generated = formats.lookup(source.format)
    return generated.check(source, kind) if generated is not None else None


def tokenizer_lexicon(sources: Sequence[DataSource]) -> list[str]:
    """Extra texts for training a builtin tokenizer, from the generated formats among `sources`
    (the synthetic benchmark gives its whole dictionary); [] for file formats."""
    texts: list[str] = []
    for name in dict.fromkeys(s.format for s in sources):
        generated = formats.lookup(name)
        if generated is not None:
            texts += generated.tokenizer_texts(next(s for s in sources if s.format == name))
    return texts


def _from_path(source: DataSource, kind: RecordKind, problems: Problems, strict: bool
               ) -> list[Record]:
    assert source.path is not None
    fmt = source.format
    path = Path(source.path)
    if fmt in _FOLDER_OK and path.is_dir():
        pass
    else:
        path = require_file(source.path)
    loaders: dict[str, Callable[[], list[Record]]] = {
        "pku_saferlhf": lambda: load_pku(path, kind, problems, strict=strict),
        "hh_rlhf": lambda: load_hh(path, kind, problems),
        "xstest": lambda: load_xstest(path, kind, problems),
        "safe_rlhf_eval": lambda: load_safe_rlhf_eval(path, kind, problems),
        "advbench": lambda: load_advbench(path, kind, problems),
        "harmbench": lambda: load_harmbench(path, kind, problems),
        "strongreject": lambda: load_strongreject(path, kind, problems),
        "jailbreakbench": lambda: load_jailbreakbench(path, kind, problems),
        "jsonl": lambda: load_jsonl(path, kind, problems),
    }
    return loaders[fmt]()


def _load(source: DataSource, kind: RecordKind, problems: Problems, seed: int, strict: bool
          ) -> list[Record]:
    where = source.path or source.hub or f"synthetic:{source.split}"
    if kind not in RECORD_KINDS:
        raise InvalidInputError(f"unknown record kind {kind!r}; expected one of "
                                f"{', '.join(RECORD_KINDS)}", file=where, field="kind")
    kinds = format_kinds(source.format)
    if kinds is None:
        raise InvalidInputError(f"unknown format {source.format!r}; expected one of "
                                f"{', '.join(known_formats())}", file=where, field="format")
    if kind not in kinds:
        raise InvalidInputError(
            f"format {source.format} cannot give {kind} records (it gives "
            f"{', '.join(kinds)})", file=where, field="format")
    if source.format == "jsonl" and source.kind is not None and source.kind != kind:
        raise InvalidInputError(f"this source is declared kind {source.kind} but the stage "
                                f"needs {kind} records", file=where, field="kind")
    if source.hub is not None:
        raise InvalidInputError(HUB_MESSAGE, file=source.hub, field="hub")
    generated = formats.lookup(source.format)
    if generated is not None:
        try:
            records = generated.load(source, kind, seed)
        except ValueError as e:
            raise InvalidInputError(str(e), file=where, field="split") from None
    else:
        records = _from_path(source, kind, problems, strict)
    if not records and not problems.errors:
        raise InvalidInputError(f"no {kind} records in this dataset; expected at least one",
                                file=where, field="path")
    return records[: source.limit] if source.limit else records


def load_records(source: DataSource, kind: RecordKind, *, seed: int = 42,
                 strict: bool = False) -> list[Record]:
    """All records of one source, in file order (at most `source.limit`).

    Raises InvalidInputError on the first problem. `seed` seeds synthetic generation.
    `strict` (pku_saferlhf safety_preference) also rejects rows whose better and safer
    responses differ (see saferlhf.runners.common.loaders.pku).
    """
    return _load(source, kind, Problems(fail_fast=True), seed, strict)


def validate_source(source: DataSource, kind: RecordKind, *, strict: bool = False) -> list[str]:
    """Every problem with a source as "file …, row …, field …: message" lines (empty = fine).

    Never raises and never touches the network (a hub source is reported, not fetched).
    """
    problems = Problems(fail_fast=False)
    try:
        _load(source, kind, problems, 42, strict)
    except InvalidInputError as e:
        problems.errors.append(e)
    except Exception as e:  # noqa: BLE001 — a submit-time check must report, not crash
        where = source.path or source.hub or f"synthetic:{source.split}"
        problems.errors.append(InvalidInputError(f"cannot read: {type(e).__name__}: {e}",
                                                 file=where))
    return [str(e) for e in problems.errors]


def load_many(sources: Sequence[DataSource], kind: RecordKind, *, seed: int = 42) -> list[Record]:
    """Concatenate several sources (the reference concatenates datasets in order)."""
    return [r for s in sources for r in load_records(s, kind, seed=seed)]


def shuffled(items: Sequence[T], seed: int) -> list[T]:
    """A copy of `items` in a seeded random order (the same seed gives the same order)."""
    out = list(items)
    random.Random(seed).shuffle(out)
    return out


def split_train_eval(items: Sequence[T], eval_ratio: float, seed: int) -> tuple[list[T], list[T]]:
    """Shuffle with `seed`, then hold out round(eval_ratio · n) items (at least 1, at most n − 1)
    as the evaluation share: returns (train, eval)."""
    if not 0 < eval_ratio < 1:
        raise ValueError(f"eval_ratio must be in (0, 1), got {eval_ratio}")
    if len(items) < 2:
        raise ValueError(f"need at least 2 items to split, got {len(items)}")
    order = shuffled(items, seed)
    n_eval = min(len(order) - 1, max(1, round(eval_ratio * len(order))))
    return order[n_eval:], order[:n_eval]
