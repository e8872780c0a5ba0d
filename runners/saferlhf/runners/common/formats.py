"""Data formats served from outside `runners.common`, found through package entry points.

The shared base must not depend on any stage package, yet the synthetic benchmark
(`saferlhf.runners.synthetic`) is a data format every stage reads. So a format that generates its
records (rather than reading a file) registers itself under the entry-point group
`saferlhf.data_formats` in pyproject.toml; `runners.common.data` looks a format up here by name.
A user's own package can add a format the same way.

A registered object provides:
    kinds: tuple[str, ...]                                 record kinds it can give
    check(source, kind) -> str | None                      a cheap submit-time check (no rows)
    load(source, kind, seed) -> list[Record]               the records; raises ValueError /
                                                           InvalidInputError on a bad request
    tokenizer_texts(source) -> list[str]                   extra texts for a builtin tokenizer
"""

from __future__ import annotations

import functools
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from saferlhf.runners.common.config import DataSource
    from saferlhf.runners.common.records import Record

ENTRY_POINT_GROUP = "saferlhf.data_formats"


class GeneratedFormat(Protocol):
    kinds: tuple[str, ...]

    def check(self, source: DataSource, kind: str) -> str | None: ...

    def load(self, source: DataSource, kind: str, seed: int) -> list[Record]: ...

    def tokenizer_texts(self, source: DataSource) -> list[str]: ...


@functools.cache
def registered() -> dict[str, GeneratedFormat]:
    """Every registered format by name (entry points are read once per process)."""
    return {ep.name: ep.load() for ep in entry_points(group=ENTRY_POINT_GROUP)}


def lookup(name: str) -> GeneratedFormat | None:
    return registered().get(name)
