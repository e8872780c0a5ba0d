"""render_config: a planner bug (an invalid stage.json) fails loudly, never reaches a runner."""

from __future__ import annotations

import pytest
from saferlhf.runners.common.config import BackendSpec, DistributedSpec, parse_stage_config
from saferlhf.service.planning.dag import PlanError
from saferlhf.service.planning.render import render_config

COMMON = dict(output_dir="/a/r1/reward", seed=3, backend=BackendSpec(),
              distributed=DistributedSpec(), job="j", round=1)
PARAMS = {"data": [{"format": "synthetic", "split": "preference"}]}


def test_a_complete_config_renders_to_json_the_runner_accepts() -> None:
    raw = render_config("reward", PARAMS, inputs={"policy_path": "/a/r1/sft/model"}, **COMMON)
    config = parse_stage_config(raw)
    assert config.kind == "reward" and config.seed == 3
    assert raw["policy_path"] == "/a/r1/sft/model"


def test_a_missing_input_is_a_plan_error() -> None:
    with pytest.raises(PlanError, match="invalid reward stage.json"):
        render_config("reward", PARAMS, inputs={}, **COMMON)


def test_an_unknown_kind_is_a_plan_error() -> None:
    with pytest.raises(PlanError, match="no runner config"):
        render_config("distill", PARAMS, inputs={}, **COMMON)
