"""Hypothesis strategies of the fuzz (bench/reliability/fuzz.py): job specs that are mutated,
malformed, deep, huge or hostile; ids with path traversal; runner event batches that are
malformed, duplicated, out of order — or well-formed envelopes around fuzzed payloads, so that
ingestion, the store and the gauges see them. Draws never depend on the server's state (`pick`),
so hypothesis generates consistently while ids come and go."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

import yaml
from hypothesis import strategies as st
from saferlhf.v1 import resources_pb2 as pb

from bench.reliability.service import ROOT

QUICKSTART = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
TEN_MB = 10 * 1024 * 1024


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out: list[tuple] = []
    if isinstance(node, dict):
        for k, v in node.items():
            out += [(*prefix, k), *_paths(v, (*prefix, k))]
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += [(*prefix, i), *_paths(v, (*prefix, i))]
    return out


PATHS = _paths(QUICKSTART)
TRAVERSAL = ["../../etc/passwd", "/etc/shadow", "..", "../", "a/../../b", "%2e%2e/x",
             "file:///etc/passwd", "file://../../x", "pvc://claim/../../x", "s3://b/../../x",
             "\x00", "r1/../../sft", "builtin:nope", "hub:x/y", "C:\\windows"]
NUMBERS = st.one_of(st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=True,
                                                            allow_infinity=True),
                    st.sampled_from([0, -1, 1e309, -1e309, 2**64, "NaN", "-inf", "1e999"]))
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=40),
                    st.sampled_from(TRAVERSAL))


def _nested(depth: int) -> Any:
    node: Any = "x"
    for _ in range(depth):
        node = {"a": [node]}
    return node


VALUES = st.one_of(
    SCALARS, st.lists(SCALARS, max_size=4), st.dictionaries(st.text(max_size=8), SCALARS,
                                                            max_size=3),
    st.integers(1, 60).map(_nested),
)


def mutate(doc: Any, path: tuple, value: Any, delete: bool) -> Any:
    """A deep copy of `doc` with the value at `path` replaced by `value` (or deleted)."""
    doc = copy.deepcopy(doc)
    node = doc
    for key in path[:-1]:
        node = node[key]
    if delete and isinstance(node, dict):
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


@st.composite
def spec_text(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["mutated"] * 6 + ["text", "bad_yaml", "deep", "huge",
                                                   "types", "anchors"]))
    if kind == "mutated":
        doc = QUICKSTART
        for path, value, delete in draw(st.lists(st.tuples(st.sampled_from(PATHS), VALUES,
                                                            st.booleans()),
                                                  min_size=1, max_size=4)):
            try:
                doc = mutate(doc, path, value, delete)
            except (KeyError, IndexError, TypeError):
                continue
        return yaml.safe_dump(doc, allow_unicode=True)
    if kind == "text":
        return draw(st.text(max_size=400))
    if kind == "bad_yaml":
        return draw(st.sampled_from([
            "a: [1, 2", "{{{", "key: : value", "- - - -", "\t\tx: 1", "a: *undefined",
            "!!python/object/apply:os.system ['true']", "%YAML 9.9\n---\na: 1",
            "apiVersion: saferlhf.dev/v1alpha1\nkind: SafeRLHFJob\nspec: [\n",
        ])) + draw(st.text(max_size=20))
    if kind == "deep":
        depth = draw(st.sampled_from([100, 1000, 5000]))
        return draw(st.sampled_from(["[" * depth + "]" * depth, "a:\n" + "".join(
            " " * (i + 1) + f"k{i}:\n" for i in range(min(depth, 400))) + " " * 401 + "v"]))
    if kind == "huge":
        where = draw(st.sampled_from(["name", "label", "comment", "value"]))
        big = "x" * draw(st.sampled_from([TEN_MB, 1024 * 1024, 100_000]))
        doc = copy.deepcopy(QUICKSTART)
        if where == "name":
            doc["metadata"]["name"] = big
        elif where == "label":
            doc["metadata"]["labels"] = {"k": big}
        elif where == "value":
            doc["spec"]["stages"]["sft"]["epochs"] = big
        else:
            return yaml.safe_dump(doc) + "# " + big
        return yaml.safe_dump(doc)
    if kind == "anchors":  # a billion laughs, bounded
        return "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
            f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
            for p, c in zip("abcdefgh", "bcdefghi", strict=True)) + "spec: *i\n"
    doc = copy.deepcopy(QUICKSTART)
    doc[draw(st.sampled_from(["spec", "metadata", "apiVersion", "kind"]))] = draw(VALUES)
    return yaml.safe_dump(doc, allow_unicode=True)


IDS = st.one_of(st.text(max_size=40), st.sampled_from(TRAVERSAL),
                st.just("x" * 100_000), st.just("j-20260101-000000"))


@dataclass
class Known:
    """Ids the server really has (jobs created by the fuzz), to aim requests at."""

    jobs: list[str] = field(default_factory=list)
    stages: list[str] = field(default_factory=lambda: ["r1/sft", "r1/reward", "r2/collect"])
    gates: list[str] = field(default_factory=lambda: ["r1/cost/0", "r1/evaluate/1"])


def pick(data: st.DataObject, items: list[str], other: st.SearchStrategy[str],
         share: int = 1) -> str:
    """One of `items` (ids that exist now) or a value of `other`. Draws the same things whatever
    `items` holds, so hypothesis's generation does not depend on the server's state."""
    fallback = data.draw(other)
    index = data.draw(st.integers(0, 2**16))
    use_item = data.draw(st.integers(0, share)) > 0
    return items[index % len(items)] if items and use_item else fallback


def event_payload() -> st.SearchStrategy[str]:
    values = st.dictionaries(st.text(max_size=12), st.one_of(NUMBERS, st.text(max_size=5),
                                                             st.none(), st.lists(NUMBERS,
                                                                                 max_size=2)),
                             max_size=4)
    obj = st.fixed_dictionaries({}, optional={
        "step": st.one_of(NUMBERS, st.text(max_size=5), st.none()),
        "total_steps": st.one_of(NUMBERS, st.text(max_size=5), st.none(), st.just("0.0")),
        "values": st.one_of(values, st.lists(st.integers(), max_size=2), st.text(max_size=5)),
        "message": st.one_of(st.text(max_size=60), st.sampled_from(
            ["VacuousThreshold: x", "LambdaPinned: y", "LambdaBelowBreakEven"])),
        "level": st.sampled_from(["info", "warning", "error", "", "x"]),
        "path": st.sampled_from(TRAVERSAL), "name": st.text(max_size=10),
    })
    return st.one_of(
        obj.map(lambda d: json.dumps(d, allow_nan=True)), st.text(max_size=60),
        st.sampled_from(["", "null", "[]", "1", '"s"', "{", '{"values": {"x": NaN}}',
                         '{"values": {"x": Infinity}}', '{"values": {"x": 1e400}}',
                         "[" * 5000 + "]" * 5000, '{"a":' * 3000 + "1" + "}" * 3000]))


def events(seqs: st.SearchStrategy[int]) -> st.SearchStrategy[list]:
    one = st.builds(pb.Event, seq=seqs, attempt=st.one_of(st.just(1), st.integers(-2**31,
                                                                                 2**31 - 1)),
                    time=st.one_of(st.just("2026-11-27T10:00:00Z"), st.text(max_size=30)),
                    type=st.one_of(st.integers(1, 6), st.integers(0, 20)),
                    payload_json=event_payload())
    return st.one_of(st.lists(one, max_size=8), st.lists(one, min_size=1, max_size=3).map(
        lambda es: es + es + list(reversed(es))))  # duplicated and out of order


def well_formed_events() -> st.SearchStrategy[list[tuple[int, str]]]:
    """(type, payload) of events whose envelope is valid (the seqs are filled in fresh), so that
    only the payload is fuzzed and ingestion, the store and the gauges see it."""
    progress = st.fixed_dictionaries({
        "step": st.one_of(NUMBERS, st.text(max_size=5), st.just(10**400), st.none()),
        "total_steps": st.one_of(NUMBERS, st.text(min_size=1, max_size=5), st.just("0.0"),
                                 st.just(10**400), st.lists(st.integers(), max_size=2)),
    }).map(lambda d: json.dumps(d, allow_nan=True))
    metrics = st.fixed_dictionaries({
        "step": st.one_of(st.integers(0, 10**6), NUMBERS, st.just(10**400)),
        "values": st.dictionaries(st.sampled_from(["train/lambda", "train/episode_cost",
                                                   "train/reward", "eval/harmful_rate/x",
                                                   "eval/accuracy", "x" * 300]),
                                  st.one_of(NUMBERS, st.just(10**400), st.text(max_size=3)),
                                  max_size=4),
    }).map(lambda d: json.dumps(d, allow_nan=True))
    one = st.one_of(st.tuples(st.integers(1, 6), event_payload()),
                    st.tuples(st.just(2), progress), st.tuples(st.sampled_from([1, 5]), metrics))
    return st.lists(one, min_size=1, max_size=6)


