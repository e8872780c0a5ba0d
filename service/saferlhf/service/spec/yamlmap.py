"""YAML parsing that remembers where every value came from: a field path → line map built from
yaml's composed node tree, so each spec error can name its line. Duplicate keys (which
`yaml.safe_load` silently resolves to the last one) are reported instead of hidden."""

from __future__ import annotations

import threading
from typing import Any

import yaml
from saferlhf.service.errors import FieldViolation

Loc = tuple[str | int, ...]
MAX_VALUES = 20_000
_BASE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # same safe semantics, 10× faster


class _Loader(_BASE_LOADER):  # type: ignore[misc,valid-type]
    """The safe loader with its tag resolution memoised: libyaml's composer calls PyYAML's
    Python resolver back for every node, and resolution is a pure function of (node kind,
    value, implicit flags) while no path resolvers are registered. Specs repeat most scalars."""

    _tags: dict[tuple[Any, Any, Any], str] = {}
    MAX_TAGS = 10_000

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if self.yaml_path_resolvers:  # resolution depends on the path: no memo
            return str(super().resolve(kind, value, implicit))
        key = (kind, value, implicit)
        tag = self._tags.get(key)
        if tag is None:
            tag = str(super().resolve(kind, value, implicit))
            if len(self._tags) < self.MAX_TAGS:
                self._tags[key] = tag
        return tag


_LOADER = _Loader


def node_lines(node: yaml.Node | None) -> tuple[dict[Loc, int], list[FieldViolation]]:
    """Walk a composed YAML node tree: every key/item path → its 1-based line, plus duplicate
    keys and an over-size document (both as violations)."""
    lines: dict[Loc, int] = {}
    duplicates: list[FieldViolation] = []
    if node is None:
        return lines, duplicates
    lines[()] = node.start_mark.line + 1
    stack: list[tuple[Loc, yaml.Node, int]] = [((), node, 0)]
    visited = 0
    while stack:
        loc, current, depth = stack.pop()
        visited += 1
        if visited > MAX_VALUES:  # YAML aliases can expand a small text exponentially
            duplicates.append(FieldViolation(
                "<document>", f"the document expands to more than {MAX_VALUES} values "
                "(YAML anchors/aliases?); a job spec is far smaller"))
            break
        if depth > 64:  # deeper than any spec; keeps a hostile document from costing much
            continue
        if isinstance(current, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in current.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = key_node.value
                child = (*loc, key)
                if key in seen:
                    duplicates.append(FieldViolation(
                        field=dotted(child),
                        description="duplicate key: it is given twice in the same mapping; "
                        "keep one",
                        line=key_node.start_mark.line + 1,
                    ))
                seen.add(key)
                lines[child] = key_node.start_mark.line + 1
                stack.append((child, value_node, depth + 1))
        elif isinstance(current, yaml.SequenceNode):
            for index, item in enumerate(current.value):
                child = (*loc, index)
                lines[child] = item.start_mark.line + 1
                stack.append((child, item, depth + 1))
    return lines, duplicates


def dotted(loc: Loc) -> str:
    """('spec', 'gates', 0, 'op') → 'spec.gates[0].op'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<document>"


def line_of(lines: dict[Loc, int], loc: Loc) -> int | None:
    """Line of the deepest known ancestor of `loc` (a missing field → its parent's line)."""
    for end in range(len(loc), -1, -1):
        found = lines.get(tuple(loc[:end]))
        if found is not None:
            return found
    return None


_STR, _SEQ, _MAP, _MERGE = (f"tag:yaml.org,2002:{t}" for t in ("str", "seq", "map", "merge"))
_INT, _FLOAT, _BOOL, _NULL = (f"tag:yaml.org,2002:{t}" for t in ("int", "float", "bool", "null"))
_PLAIN_FLOAT = frozenset("0123456789.+-eE")


def _scalar(node: yaml.ScalarNode, loader: Any) -> Any:
    """A scalar's value as the safe constructor builds it; the common forms of int, float, bool
    and null directly (the rest — octal, hex, sexagesimal, underscores, .inf, timestamps … — by
    the constructor itself)."""
    tag, value = node.tag, node.value
    if tag == _STR:
        return value
    digits = value[1:] if value[:1] in ("+", "-") else value
    if tag == _INT and digits.isdigit() and (digits == "0" or digits[0] != "0"):  # not octal
        return int(value)
    if tag == _FLOAT and _PLAIN_FLOAT.issuperset(value):
        return float(value)
    if tag == _BOOL:
        return loader.bool_values[value.lower()]
    if tag == _NULL:
        return None
    return loader.construct_object(node, deep=True)


def _construct(node: yaml.Node, loader: Any, memo: dict[int, Any]) -> Any:
    """The document's Python value: what `construct_document` gives, at a third of its cost.

    Plain strings, lists and dicts (most of a spec) are built here; every other scalar (int,
    float, bool, null, timestamps), merge keys and explicit tags go to the safe constructor
    itself, so the semantics stay PyYAML's. Aliased nodes are built once and shared, as PyYAML
    does, so an alias bomb costs no more here than there."""
    key = id(node)
    if key in memo:
        return memo[key]
    if isinstance(node, yaml.ScalarNode):
        value = _scalar(node, loader)
    elif isinstance(node, yaml.SequenceNode) and node.tag == _SEQ:
        value = memo[key] = []
        value.extend(_construct(item, loader, memo) for item in node.value)
    elif isinstance(node, yaml.MappingNode) and node.tag == _MAP and not any(
            k.tag == _MERGE for k, _ in node.value):
        value = memo[key] = {}
        for key_node, value_node in node.value:
            name = _construct(key_node, loader, memo)
            try:
                value[name] = _construct(value_node, loader, memo)
            except TypeError:  # an unhashable key, e.g. a list: PyYAML's own error
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    "found unhashable key", key_node.start_mark) from None
    else:
        value = loader.construct_object(node, deep=True)
    memo[key] = value
    return value


def spec_project(text: str) -> str | None:
    """`metadata.project` of a spec, or None where the text is not a mapping with a non-empty
    string there. The servicer asks before it authorises; the parse is kept for the `load_spec`
    that follows on this thread with the same text (`parse_yaml`), so a request parses once."""
    data, _, violations = _parse(text)
    _last.parse = (text, (data, _, violations))
    if any(v.field == "<document>" for v in violations) or not isinstance(data, dict):
        return None
    metadata = data.get("metadata")
    project = metadata.get("project") if isinstance(metadata, dict) else None
    return project if isinstance(project, str) and project else None


_last = threading.local()  # this thread's parse kept by spec_project for its load_spec


def parse_yaml(text: str) -> tuple[Any, dict[Loc, int], list[FieldViolation]]:
    """Parse one YAML document → (data, lines, violations); data is None on a syntax error.
    The caller owns the result (load_spec rewrites paths in it)."""
    kept = getattr(_last, "parse", None)
    _last.parse = None
    if kept is not None and kept[0] == text:  # spec_project's parse, handed over (once)
        return kept[1]
    return _parse(text)


def _parse(text: str) -> tuple[Any, dict[Loc, int], list[FieldViolation]]:
    loader = _LOADER(text)
    try:
        node = loader.get_single_node()  # parse once (libyaml when present), keep the node tree
        data = _construct(node, loader, {}) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "syntax error"
        return None, {}, [FieldViolation(
            field="<document>", description=f"invalid YAML: {problem}", line=where
        )]
    except yaml.YAMLError as exc:  # e.g. "expected a single document"
        return None, {}, [FieldViolation(field="<document>", description=f"invalid YAML: {exc}")]
    except RecursionError:
        return None, {}, [FieldViolation(field="<document>", description="YAML nested too deeply")]
    finally:
        loader.dispose()
    lines, duplicates = node_lines(node)
    return data, lines, duplicates
