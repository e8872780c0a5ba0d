"""How the store's rows map to the domain dataclasses, the ListJobs filter language and the
opaque page tokens. Pure: no database access here."""

from __future__ import annotations

import base64
import dataclasses
import enum
import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from saferlhf.service.errors import FieldViolation, SpecError
from saferlhf.service.state.types import (
    Attempt,
    AttemptState,
    FailureClass,
    Gate,
    GateState,
    Job,
    JobState,
    Stage,
)

# -------------------------------------------------------------------------------------------
# Row <-> dataclass mapping
# -------------------------------------------------------------------------------------------


_DECODED: dict[str, Any] = {}  # JSON text → its value: a stage's config is read every tick
_DECODED_MAX = 8192


def _loads(text: str) -> Any:
    """json.loads, memoised on the text. Decoded rows are shared and read-only: copy a value
    before changing it (nothing in the service changes one in place)."""
    value = _DECODED.get(text)
    if value is None:
        if len(_DECODED) >= _DECODED_MAX:
            _DECODED.clear()
        value = _DECODED[text] = json.loads(text)
    return value


@dataclass(frozen=True)
class Table:
    name: str
    cls: Any  # the dataclass a row maps to
    json_fields: frozenset[str]
    enum_fields: dict[str, Any]  # field -> its enum class

    @functools.cached_property
    def fields(self) -> tuple[str, ...]:  # cached: decode runs for every row of every read
        return tuple(f.name for f in dataclasses.fields(self.cls))

    def encode_value(self, name: str, value: Any) -> Any:
        if name in self.json_fields:
            return json.dumps(list(value) if isinstance(value, tuple) else value, sort_keys=True)
        if isinstance(value, enum.Enum):
            return value.value
        return value

    def encode(self, obj: Any) -> list[Any]:
        return [self.encode_value(f, getattr(obj, f)) for f in self.fields]

    def decode(self, row: Sequence[Any]) -> Any:
        kwargs: dict[str, Any] = {}
        for name, value in zip(self.fields, row, strict=True):
            if name in self.json_fields:
                value = _loads(value)
                if name == "depends_on":
                    value = tuple(value)
            elif name in self.enum_fields:
                value = self.enum_fields[name](value)
            kwargs[name] = value
        return self.cls(**kwargs)

    @property
    def select(self) -> str:
        return ", ".join(self.fields)


JOBS = Table("jobs", Job, frozenset({"spec", "labels", "conditions"}), {"state": JobState})
STAGES = Table(
    "stages", Stage, frozenset({"depends_on", "config", "result", "resources"}),
    {"state": AttemptState},
)
ATTEMPTS = Table(
    "attempts", Attempt, frozenset(), {"state": AttemptState, "failure": FailureClass}
)
GATES = Table("gates", Gate, frozenset(), {"state": GateState})


# -------------------------------------------------------------------------------------------
# List filters and page tokens
# -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobFilter:
    states: tuple[str, ...] = ()
    projects: tuple[str, ...] | None = None  # None: every project
    name: str | None = None
    labels: tuple[tuple[str, str], ...] = ()

    def fingerprint(self) -> str:
        raw = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(raw.encode()).hexdigest()[:12]


def parse_filter(text: str, projects: Sequence[str] | None = None) -> JobFilter:
    """`state=RUNNING project=a name=x label.team=safety` → JobFilter (SpecError on bad terms)."""
    states: list[str] = []
    name = None
    labels = []
    wanted_projects: list[str] = []
    violations = []
    for term in text.split():
        key, sep, value = term.partition("=")
        if not sep or not value:
            violations.append(FieldViolation("filter", f"expected key=value, got {term!r}"))
        elif key == "state":
            if value.upper() not in JobState.__members__:
                violations.append(FieldViolation(
                    "filter", f"unknown state {value!r}; expected one of "
                    + ", ".join(JobState.__members__)))
            states.append(value.upper())
        elif key == "project":
            wanted_projects.append(value)
        elif key == "name":
            name = value
        elif key.startswith("label.") and len(key) > len("label."):
            labels.append((key[len("label."):], value))
        else:
            violations.append(FieldViolation(
                "filter", f"unknown key {key!r}; expected state, project, name or label.<key>"))
    if violations:
        raise SpecError(violations)
    allowed: tuple[str, ...] | None = tuple(projects) if projects is not None else None
    if wanted_projects:
        allowed = tuple(p for p in wanted_projects if allowed is None or p in allowed)
    return JobFilter(tuple(states), allowed, name, tuple(sorted(labels)))


def encode_token(created_at: float, job_id: str, fingerprint: str) -> str:
    raw = json.dumps([created_at, job_id, fingerprint]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, fingerprint: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        created_at, job_id, fp = json.loads(raw)
        created_at = float(created_at)
    except (ValueError, TypeError) as exc:
        raise SpecError([FieldViolation("page_token", "not a token this server issued")]) from exc
    if fp != fingerprint:
        raise SpecError([FieldViolation(
            "page_token", "was issued for another filter; repeat the first request's filter")])
    return created_at, str(job_id)
