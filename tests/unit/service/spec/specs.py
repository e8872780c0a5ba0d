"""Valid job specs to start tests from (tests mutate copies)."""

from __future__ import annotations

import copy
from typing import Any

import yaml

BASE: dict[str, Any] = {
    "apiVersion": "saferlhf.dev/v1alpha1",
    "kind": "SafeRLHFJob",
    "metadata": {"name": "beaver-tiny", "project": "safety-team", "labels": {"purpose": "test"}},
    "spec": {
        "executor": "local",
        "model": {"path": "builtin:tiny-gpt2"},
        "stages": {
            "sft": {"data": [{"format": "synthetic", "split": "sft"}], "max_steps": 5},
            "reward": {"data": [{"format": "synthetic", "split": "preference"}]},
            "cost": {"data": [{"format": "synthetic", "split": "safety_preference"}]},
            "ppo_lag": {
                "prompts": [{"format": "synthetic", "split": "prompts"}],
                "safety_budget": {"max_harmful_rate": 0.02},
                "lambda_lr": 0.1,
            },
            "eval": {"prompts": [{"format": "synthetic", "split": "eval"}],
                     "judges": ["synthetic", "cost_model"]},
        },
        "rounds": {"count": 1},
        "gates": [{"after": "eval", "metric": "eval/harmful_rate", "op": "<=", "value": 0.1}],
        "seed": 7,
    },
}


def spec_dict(**spec_updates: Any) -> dict[str, Any]:
    """A deep copy of BASE with top-level `spec` keys replaced."""
    doc = copy.deepcopy(BASE)
    doc["spec"].update(copy.deepcopy(spec_updates))
    return doc


def to_yaml(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False)
