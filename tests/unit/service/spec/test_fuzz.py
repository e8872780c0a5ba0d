"""Hypothesis: random mutations of valid specs give a JobSpec or a SpecError — never another
exception — and every spec that loads also plans (a planner bug would raise PlanError)."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from saferlhf.service.errors import SpecError
from saferlhf.service.planning.plan import plan_job
from saferlhf.service.spec.load import load_spec

from tests.unit.service.spec.specs import spec_dict, to_yaml

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["builtin:tiny-gpt2", "../x", "/etc/passwd", "synthetic", "use", "eval",
                     "ppo_lag", "import", "pause", "<=", "1Gi", "file://./a", "s3://b/p"]),
)
VALUES = st.recursive(
    SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                     st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6,
)
KEYS = st.one_of(st.text(max_size=10), st.sampled_from(
    ["use", "threshold", "safety_budget", "path", "hub", "revision", "resources", "deepspeed",
     "rounds", "count", "labeler", "nodes", "after", "metric", "split", "format"]))


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _paths(value, (*prefix, index))
    return out


def _parent(doc: Any, path: tuple) -> Any:
    for part in path[:-1]:
        doc = doc[part]
    return doc


def _mutate(data: st.DataObject, doc: dict) -> dict:
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 4))):
        paths = [p for p in _paths(doc) if p]
        path = data.draw(st.sampled_from(paths))
        parent = _parent(doc, path)
        action = data.draw(st.sampled_from(["delete", "replace", "add"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "replace":
            parent[path[-1]] = data.draw(VALUES)
        elif isinstance(parent[path[-1]], dict):
            parent[path[-1]][data.draw(KEYS)] = data.draw(VALUES)
    return doc


def _load_and_plan(text: str) -> None:
    try:
        job = load_spec(text, check_data=False)
    except SpecError as exc:
        assert exc.violations
        assert all(v.field and v.description for v in exc.violations)
        return
    plan = plan_job(job, job_id="j-fuzz", artifacts_root="/tmp/artifacts")
    assert plan.stages


def _base(data: st.DataObject) -> dict:
    rounds = data.draw(st.integers(1, 3))
    labeler = data.draw(st.sampled_from(["oracle", "import"]))
    doc = spec_dict(rounds={"count": rounds, "collect": {"labeler": labeler}})
    for stage in ("sft", "reward", "cost"):  # some bases skip stages with `use:`
        if data.draw(st.booleans()):
            doc["spec"]["stages"][stage] = {"use": f"models/{stage}"}
    if data.draw(st.booleans()):
        doc["spec"]["executor"] = "kubernetes"
        doc["spec"]["defaults"] = {"resources": {"nodes": 2, "nproc_per_node": 8},
                                   "deepspeed": {"zero_stage": 3}}
        doc["spec"]["kubernetes"] = {"image": "ghcr.io/a/b:1", "queue": "q",
                                     "tolerations": [{"key": "gpu", "operator": "Exists"}]}
    return doc


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_specs_load_or_raise_spec_error_and_loaded_ones_plan(data: st.DataObject) -> None:
    _load_and_plan(to_yaml(_mutate(data, _base(data))))


@settings(max_examples=40, deadline=None, database=None)
@given(st.data())
def test_corrupted_yaml_text_only_ever_raises_spec_error(data: st.DataObject) -> None:
    text = to_yaml(_base(data))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(text)))
        cut = data.draw(st.integers(0, 5))
        junk = data.draw(st.sampled_from(["", ":", "- ", "{", "]", "&a ", "*a", "!!python/x ",
                                          "\t", "'", "\n  ", "? ", "%YAML 1.1\n---\n"]))
        text = text[:at] + junk + text[at + cut:]
    _load_and_plan(text)


def test_an_alias_bomb_is_refused_quickly() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 8)]
    text = "\n".join(lines) + "\n" + to_yaml(spec_dict())
    try:
        load_spec(text)
    except SpecError as exc:
        assert any("expands" in v.description for v in exc.violations)
    else:
        raise AssertionError("an alias bomb was accepted")
