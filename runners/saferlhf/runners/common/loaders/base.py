"""Shared plumbing of the loaders: opening files, a problem collector, typed field readers.

Every problem is an `InvalidInputError(file=, row=, field=)`. A loader reports problems through a
`Problems` collector: in `fail_fast` mode (training) the first one raises; in collect mode
(submit-time validation) they accumulate up to a cap and loading goes on with the next row.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from saferlhf.runners.common.errors import InvalidInputError

MAX_PROBLEMS = 50


class SkipRow(Exception):
    """Raised inside a row handler after a problem was reported: drop this row, go on."""


class Problems:
    """Collects InvalidInputErrors; raises the first one when `fail_fast`."""

    def __init__(self, fail_fast: bool) -> None:
        self.fail_fast = fail_fast
        self.errors: list[InvalidInputError] = []

    def report(self, message: str, *, file: str, row: int | None = None,
               field: str | None = None) -> SkipRow:
        err = InvalidInputError(message, file=file, row=row, field=field)
        if self.fail_fast:
            raise err
        if len(self.errors) < MAX_PROBLEMS:
            self.errors.append(err)
        return SkipRow()

    @property
    def full(self) -> bool:
        return len(self.errors) >= MAX_PROBLEMS


def require_file(path: str, *, field: str = "path") -> Path:
    p = Path(path)
    if not p.exists():
        raise InvalidInputError(
            "no such file; check the path (relative paths are relative to the runner's working "
            "directory)", file=path, field=field)
    if not p.is_file():
        raise InvalidInputError("expected a file, got a directory", file=path, field=field)
    return p


def open_text(path: Path) -> io.TextIOBase:
    """Open a UTF-8 text file, transparently gunzipping `*.gz`."""
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")  # type: ignore[return-value]
    return path.open("r", encoding="utf-8")  # type: ignore[return-value]


def iter_jsonl(path: Path, problems: Problems) -> Iterator[tuple[int, dict[str, Any]]]:
    """(1-based line number, object) for each non-blank line; bad lines are reported."""
    name = str(path)
    try:
        with open_text(path) as f:
            for row, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    problems.report(f"not valid JSON ({e.msg} at column {e.colno}); expected one "
                                    "JSON object per line", file=name, row=row)
                    continue
                if not isinstance(obj, dict):
                    problems.report(f"expected a JSON object, got {type(obj).__name__}",
                                    file=name, row=row)
                    continue
                yield row, obj
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError, OSError) as e:
        raise InvalidInputError(f"cannot read the file as UTF-8 JSON lines: {e}", file=name) from e


def read_json(path: Path) -> Any:
    try:
        with open_text(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise InvalidInputError(f"not valid JSON ({e.msg} at line {e.lineno})", file=str(path),
                                row=e.lineno) from e
    except (UnicodeDecodeError, OSError) as e:
        raise InvalidInputError(f"cannot read the file as UTF-8 JSON: {e}", file=str(path)) from e


def iter_csv(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """(1-based data-row number, row) for each CSV record (the header is not counted)."""
    name = str(path)
    try:
        with open_text(path) as f:
            reader = csv.DictReader(f)
            missing = [c for c in required if c not in (reader.fieldnames or [])]
            if missing:
                raise InvalidInputError(
                    f"missing CSV column(s) {', '.join(missing)}; header is "
                    f"{','.join(reader.fieldnames or [])}", file=name, field=missing[0])
            yield from enumerate(reader, start=1)
    except (UnicodeDecodeError, csv.Error, OSError) as e:
        raise InvalidInputError(f"cannot read the file as UTF-8 CSV: {e}", file=name) from e


def get_str(obj: dict[str, Any], field: str, file: str, row: int, problems: Problems) -> str:
    value = obj.get(field)
    if field not in obj:
        raise problems.report("missing field; expected a string", file=file, row=row, field=field)
    if not isinstance(value, str):
        raise problems.report(f"expected a string, got {type(value).__name__}", file=file,
                              row=row, field=field)
    if not value.strip():
        raise problems.report("expected a non-empty string", file=file, row=row, field=field)
    return value


def get_bool(obj: dict[str, Any], field: str, file: str, row: int, problems: Problems) -> bool:
    if field not in obj:
        raise problems.report("missing field; expected true or false", file=file, row=row,
                              field=field)
    value = obj[field]
    if not isinstance(value, bool):
        raise problems.report(f"expected true or false, got {value!r}", file=file, row=row,
                              field=field)
    return value


def get_response_id(obj: dict[str, Any], field: str, file: str, row: int,
                    problems: Problems) -> int:
    """A PKU `*_response_id`: 0 or 1 (an int, or the strings "0"/"1")."""
    if field not in obj:
        raise problems.report("missing field; expected 0 or 1", file=file, row=row, field=field)
    value = obj[field]
    if isinstance(value, bool) or value not in (0, 1, "0", "1"):
        raise problems.report(f"expected 0 or 1, got {value!r}", file=file, row=row, field=field)
    return int(value)


def get_prompt(obj: dict[str, Any], field: str, file: str, row: int,
               problems: Problems) -> str | tuple[str, ...]:
    """A prompt: a string, or a list of turns of odd length (user, assistant, …, user)."""
    value = obj.get(field)
    if isinstance(value, list):
        if not value or len(value) % 2 != 1 or not all(isinstance(t, str) for t in value):
            raise problems.report(
                "expected a string or a list of strings of odd length ending on a user turn",
                file=file, row=row, field=field)
        return tuple(value)
    return get_str(obj, field, file, row, problems)
