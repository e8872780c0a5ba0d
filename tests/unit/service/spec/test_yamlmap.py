"""parse_yaml builds values itself (a third of PyYAML's constructor cost): it must give exactly
what `yaml.safe_load` gives, on the shipped YAML and on every YAML feature a spec could use."""

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from saferlhf.service.spec.yamlmap import parse_yaml, spec_project

ROOT = Path(__file__).resolve().parents[4]
SHIPPED = sorted([*ROOT.glob("examples/*.yaml"), ROOT / "charts/saferlhf/values.yaml"])

TRICKY = [
    "a: &x [1, 2]\nb: *x\n",  # aliases
    "base: &b {x: 1, y: two}\nc: {<<: *b, y: 3}\n",  # merge keys
    "f: !!set {a, b}\np: !!pairs [{a: 1}]\no: !!omap [{a: 1}]\n",  # explicit collection tags
    "t: 2026-01-01\nts: 2026-01-01T10:00:00Z\nn: null\ntilde: ~\n",
    "b1: yes\nb2: off\nb3: True\ni: 0x1f\no: 0o17\ns: '007'\nu: 1_000\nsx: 1:30\n",
    "f1: 1.5e3\nf2: .inf\nf3: -.Inf\nbin: !!binary aGVsbG8=\nstr: !!str 12\n",
    "k: |\n  block\n  text\nl: >\n  folded\n",
    "- 1\n- [2, {a: b}]\n- {c: [d, e]}\n",
]


@pytest.mark.parametrize("text", [p.read_text() for p in SHIPPED] + TRICKY)
def test_parse_yaml_gives_exactly_what_safe_load_gives(text: str) -> None:
    data, _, violations = parse_yaml(text)
    assert violations == [] or all("duplicate" in v.description for v in violations)
    assert data == yaml.safe_load(text)


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8),
                    st.floats(allow_nan=False))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=20)


@settings(max_examples=150, deadline=None)
@given(values, st.sampled_from([None, True]))
def test_parse_yaml_round_trips_any_dumped_value_like_safe_load(value, flow) -> None:
    text = yaml.safe_dump({"v": value}, default_flow_style=flow)
    assert parse_yaml(text)[0] == yaml.safe_load(text)


def test_an_unhashable_key_is_a_yaml_error_not_a_crash() -> None:
    data, _, violations = parse_yaml("[1, 2]: x\n")
    assert data is None and "unhashable key" in violations[0].description


def test_the_project_is_read_from_the_node_tree_without_building_values() -> None:
    assert spec_project("metadata: {name: a, project: vision}\nspec: {}\n") == "vision"
    assert spec_project("metadata: {project: 7}\n") is None  # not a string
    assert spec_project("metadata: [1]\n") is None
    assert spec_project("{unclosed\n") is None
    assert spec_project("- a list\n") is None


def test_the_servicers_project_lookup_hands_its_parse_to_the_load_that_follows() -> None:
    """spec_project then parse_yaml of the same text on one thread parse once (the second call
    gets the first's result); a different text, or a second call, parses anew."""
    from saferlhf.service.spec import yamlmap

    text = "metadata: {name: a, project: vision}\nspec: {x: [1, 2]}\n"
    calls = []
    real = yamlmap._parse
    yamlmap._parse = lambda t: calls.append(t) or real(t)  # type: ignore[assignment]
    try:
        assert spec_project(text) == "vision"
        first = parse_yaml(text)
        second = parse_yaml(text)
        assert spec_project(text) == "vision"
        other = parse_yaml("metadata: {project: other}\n")
    finally:
        yamlmap._parse = real  # type: ignore[assignment]
    assert calls == [text, text, text, "metadata: {project: other}\n"]
    assert first[0] == second[0] == yaml.safe_load(text) and first[0] is not second[0]
    assert other[0] == {"metadata": {"project": "other"}}


def test_memoised_tag_resolution_resolves_like_pyyaml() -> None:
    from saferlhf.service.spec.yamlmap import _Loader

    text = "a: 1\nb: '1'\nc: 1.5\nd: yes\ne: ~\nf: 0o17\ng: 2026-01-01\nh: [1, '1']\n"
    for _ in range(2):  # the second pass answers from the memo
        loader = _Loader(text)
        try:
            assert loader.get_single_data() == yaml.safe_load(text)
        finally:
            loader.dispose()
