"""The DAG helpers: topological order, cycles, unknown dependencies, ready stages."""

from __future__ import annotations

import pytest
from saferlhf.service.planning.dag import PlanError, ready_stages, topological_order


def test_topological_order_puts_every_stage_after_its_dependencies() -> None:
    deps = {"ppo": ["rm", "cm"], "rm": ["sft"], "cm": ["sft"], "sft": [], "eval": ["ppo"]}
    order = topological_order(deps)
    assert order == ["sft", "rm", "cm", "ppo", "eval"]


def test_a_cycle_is_reported_with_the_stages_involved() -> None:
    with pytest.raises(PlanError, match=r"cycle among \['a', 'b'\]"):
        topological_order({"a": ["b"], "b": ["a"], "c": []})


def test_an_unknown_dependency_is_reported() -> None:
    with pytest.raises(PlanError, match="unknown stage"):
        topological_order({"a": ["ghost"]})


def test_ready_stages_are_those_whose_dependencies_are_done() -> None:
    deps = {"sft": [], "rm": ["sft"], "cm": ["sft"], "ppo": ["rm", "cm"]}
    assert ready_stages(deps, done=[]) == ["sft"]
    assert ready_stages(deps, done=["sft"]) == ["rm", "cm"]
    assert ready_stages(deps, done=["sft", "rm"], started=["cm"]) == []
    assert ready_stages(deps, done=["sft", "rm", "cm"]) == ["ppo"]
