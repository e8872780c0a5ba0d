"""Path confinement (DESIGN §11): every file a spec names must lie inside an allowed root.

Runs on the raw YAML data before validation, so it reports alongside every other error and so the
validated spec holds only absolute, confined paths. Rules: no `..` component, no `~`, no NUL; an
absolute path (after resolving symlinks) must be inside one of the allowed roots; a relative path
is looked up in each root in order (the spec's directory first, then the data roots) and the first
existing match wins.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from saferlhf.service.errors import FieldViolation
from saferlhf.service.spec.yamlmap import Loc, dotted, line_of

# A checkout's root (service/saferlhf/service/spec/paths.py → four folders up), beside which the
# project's CI keeps its shared data; absent in an installed wheel, and then simply not a root.
REPO_ROOT = Path(__file__).resolve().parents[4]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@dataclass(frozen=True)
class Roots:
    """Allowed roots, in lookup order, as resolved absolute paths."""

    dirs: tuple[str, ...]

    @classmethod
    def of(cls, paths: Sequence[str | os.PathLike[str]]) -> Roots:
        seen: list[str] = []
        for p in paths:
            real = os.path.realpath(os.fspath(p))
            if real not in seen:
                seen.append(real)
        return cls(tuple(seen))

    def contains(self, real: str) -> bool:
        return any(real == d or real.startswith(d.rstrip("/") + "/") for d in self.dirs)


def default_roots(source_dir: str | None, artifacts_root: str | None) -> Roots:
    """The spec file's directory tree, the artifacts root and ../shared/data when present."""
    paths: list[str] = [p for p in (source_dir, artifacts_root) if p]
    if SHARED_DATA.is_dir():
        paths.append(str(SHARED_DATA))
    if not paths:
        paths.append(os.getcwd())
    return Roots.of(paths)


def resolve(value: str, roots: Roots) -> tuple[str | None, str | None]:
    """(absolute confined path, None) or (None, why it is refused)."""
    if "\x00" in value:
        return None, "contains a NUL character"
    if value.startswith("~"):
        return None, f"'~' is not expanded, got {value!r}; give an absolute path or one " \
            "relative to the spec"
    if ".." in PurePosixPath(value).parts:
        return None, f"must not contain '..', got {value!r}; paths stay inside the allowed roots"
    if os.path.isabs(value):
        real = os.path.realpath(value)
        if not roots.contains(real):
            return None, f"{value!r} is outside the allowed roots ({', '.join(roots.dirs)})"
        return real, None
    candidates = [os.path.join(d, value) for d in roots.dirs] or [os.path.abspath(value)]
    chosen = next((c for c in candidates if os.path.exists(c)), candidates[0])
    real = os.path.realpath(chosen)
    if not roots.contains(real):  # a symlink pointing out of the root
        return None, f"{value!r} resolves outside the allowed roots (via a symlink)"
    return real, None


def _is_local_model_path(parent: dict[str, Any], value: str) -> bool:
    """A ModelSpec path is a builtin, a hub id (pinned by `revision`) or a local folder."""
    if value.startswith("builtin:"):
        return False
    return not (parent.get("revision") and not value.startswith(("/", "./")))


_NOT_PATHS = {("spec", "kubernetes"), ("spec", "gates"), ("spec", "defaults")}


def _path_fields(data: Any, loc: Loc = ()) -> Iterator[tuple[Loc, dict[str, Any], str]]:
    """Every (loc, parent dict, key) under `spec` whose value is a filesystem path."""
    if isinstance(data, dict):
        for key, value in data.items():
            child = (*loc, key)
            if child in _NOT_PATHS:
                continue
            if key == "use" and isinstance(value, str):
                yield child, data, key
            elif key == "path" and isinstance(value, str):
                if len(loc) >= 1 and loc[-1] == "model" and not _is_local_model_path(data, value):
                    continue
                yield child, data, key
            elif key == "uri" and loc == ("spec", "artifacts") and isinstance(value, str):
                if value.startswith("file://"):
                    yield child, data, key
            else:
                yield from _path_fields(value, child)
    elif isinstance(data, list):
        for index, item in enumerate(data):
            yield from _path_fields(item, (*loc, index))


def confine_paths(raw: Any, roots: Roots, lines: dict[Loc, int]) -> list[FieldViolation]:
    """Rewrite every path in `raw["spec"]` to its absolute confined form, in place; report the
    ones refused. `raw` is the freshly parsed YAML (a private copy)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("spec"), dict):
        return []
    violations = []
    for loc, parent, key in _path_fields(raw["spec"], ("spec",)):
        value: str = parent[key]
        is_uri = key == "uri"
        resolved, why = resolve(value.removeprefix("file://") if is_uri else value, roots)
        if why is not None:
            violations.append(FieldViolation(dotted(loc), why, line_of(lines, loc)))
        else:
            parent[key] = f"file://{resolved}" if is_uri else resolved
    return violations
