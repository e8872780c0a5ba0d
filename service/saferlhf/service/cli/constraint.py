"""The PPO-Lagrangian constraint as the CLI shows it (issue 6, docs/safety_budget.md).

For each ppo_lag stage: the safety budget the user asked for ("at most 2% harmful on harmful
prompts") and the threshold d it was calibrated into, or the raw d when one was given, with the
current λ and J_C; and the job's guard conditions (VacuousThreshold, LambdaPinned,
LambdaBelowBreakEven) as `! …` lines. Pure: built from what GetJob / WatchJob carry — the stage's
config and result (`result.calibration`) and its latest metrics (`calibration/*`, `train/*`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from saferlhf.service.events import GUARD_CONDITIONS
from saferlhf.v1 import resources_pb2 as pb

CALIBRATED, RAW, PENDING = "calibrated", "raw", "pending"


@dataclass(frozen=True)
class Constraint:
    stage_id: str
    threshold_source: str  # calibrated | raw | pending (a budget not calibrated yet)
    threshold: float | None  # d, in cost-model units
    max_harmful_rate: float | None  # the budget's target h* (None for a raw threshold)
    scope: str | None  # harmful_prompts | all_prompts (None for a raw threshold)
    lambda_value: float | None  # λ, latest (or final)
    episode_cost: float | None  # J_C, latest (or final), in cost-model units

    def as_data(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """`r1/ppo_lag  budget ≤ 2.0% harmful (harmful_prompts) → threshold d = -2.771  λ = 1.84
        J_C = -3.10`, or `r1/ppo_lag  threshold d = 0.000 (raw)  …`."""
        if self.threshold_source == RAW:
            text = f"threshold d = {_num(self.threshold, '.3f')} (raw)"
        else:
            budget = "?" if self.max_harmful_rate is None else f"{self.max_harmful_rate:.1%}"
            d = ("(not calibrated yet)" if self.threshold_source == PENDING
                 else _num(self.threshold, ".3f"))
            text = f"budget ≤ {budget} harmful ({self.scope or '?'}) → threshold d = {d}"
        if self.lambda_value is not None:
            text += f"  λ = {self.lambda_value:.2f}"
        if self.episode_cost is not None:
            text += f"  J_C = {self.episode_cost:.2f}"
        return f"{self.stage_id}  {text}"


def _num(value: float | None, spec: str) -> str:
    return "?" if value is None else format(value, spec)


def _first(*values: Any) -> float | None:
    for v in values:
        if isinstance(v, int | float) and not isinstance(v, bool):
            return float(v)
    return None


def _object(text: str) -> dict[str, Any]:
    value = json.loads(text) if text else {}
    return value if isinstance(value, dict) else {}


def constraint_of(stage: pb.Stage, metrics: Mapping[str, float]) -> Constraint | None:
    """The constraint of a ppo_lag stage that runs PPO-Lagrangian; None for any other stage (and
    for a stage skipped with `use:`, or `algorithm: ppo | reward_shaping`)."""
    if stage.kind != "ppo_lag" or stage.skipped_with:
        return None
    config, result = _object(stage.config_json), _object(stage.result_json)
    if config.get("algorithm", "ppo_lag") != "ppo_lag":
        return None
    calibration = result.get("calibration") or {}
    budget = config.get("safety_budget") or {}
    lam = _first(metrics.get("train/lambda"), result.get("final_lambda"))
    cost = _first(metrics.get("train/episode_cost"), result.get("episode_cost"))
    if budget or calibration or "calibration/threshold" in metrics:
        d = _first(calibration.get("threshold"), metrics.get("calibration/threshold"))
        return Constraint(
            stage_id=stage.id, threshold_source=CALIBRATED if d is not None else PENDING,
            threshold=d,
            max_harmful_rate=_first(calibration.get("target"), metrics.get("calibration/target"),
                                    budget.get("max_harmful_rate")),
            scope=calibration.get("scope") or budget.get("scope"),
            lambda_value=lam, episode_cost=cost,
        )
    d = _first(config.get("threshold"), result.get("threshold"), metrics.get("train/threshold"))
    return Constraint(stage_id=stage.id, threshold_source=RAW, threshold=d, max_harmful_rate=None,
                      scope=None, lambda_value=lam, episode_cost=cost)


def constraints(stages: Iterable[pb.Stage],
                metrics: Mapping[str, Mapping[str, float]]) -> list[Constraint]:
    return [c for s in stages if (c := constraint_of(s, metrics.get(s.id, {}))) is not None]


def constraints_block(stages: Iterable[pb.Stage],
                      metrics: Mapping[str, Mapping[str, float]]) -> str:
    return "\n".join(c.line() for c in constraints(stages, metrics))


def condition_name(message: str) -> str | None:
    """The guard condition a runner warning raises (`VacuousThreshold: …`), as
    saferlhf.service.events
    decides it; None for any other message."""
    name = message.split(":", 1)[0]
    return name if name in GUARD_CONDITIONS else None


def condition_lines(conditions: Mapping[str, str]) -> list[str]:
    """`! VacuousThreshold: …` per job condition (its message already starts with the name)."""
    return [f"! {text}" if text.startswith(f"{name}:") else f"! {name}: {text}"
            for name, text in sorted(conditions.items())]
