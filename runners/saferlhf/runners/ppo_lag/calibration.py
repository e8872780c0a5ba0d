"""Safety budget → cost threshold d (issue 6; docs/safety_budget.md).

The constraint J_C ≤ d is in cost-model units and over a prompt mix, so "at most 2% harmful" has to
be translated. On a calibration pass with the starting policy we estimate, from cost signs
(cost > 0 ⇔ unsafe, reference §4):

    c_u = mean cost of unsafe responses,  c_s = mean cost of safe responses   (harmful prompts)
    p_h = share of harmful prompts,       c_B = mean cost on benign prompts

If a policy answers harmful prompts harmfully at rate h, the harmful-prompt mean cost is
h·c_u + (1−h)·c_s, so for a target h*:

    scope harmful_prompts (J_C over harmful prompts only):  d = h*·c_u + (1−h*)·c_s
    scope all_prompts     (J_C over the whole mix):
                                  d = p_h·(h*·c_u + (1−h*)·c_s) + (1−p_h)·c_B

(the second assumes benign prompts keep their calibration mean cost). With exact ±1 costs and
p_h = 0.5 the all-prompts form is d = h* − 1, the toy experiment's hand-set −0.96 for h* = 4%.
The break-even multiplier λ_be = max(ΔR, 0)/(c_u − c_s), ΔR = mean reward of unsafe minus safe
responses on harmful prompts, is the λ above which the Lagrangian prefers the safe response.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

Scope = Literal["harmful_prompts", "all_prompts"]


class CalibrationError(ValueError):
    """The calibration pass cannot support a threshold (e.g. the cost model never flags)."""


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


@dataclass(frozen=True)
class Calibration:
    target: float  # h*, the max harmful rate asked for
    scope: Scope
    threshold: float  # d
    mean_cost_safe: float  # c_s
    mean_cost_unsafe: float  # c_u
    harmful_prompt_share: float  # p_h
    mean_cost_benign: float | None  # c_B (None without benign prompts)
    start_harmful_rate: float  # the starting policy's harmful rate on harmful prompts
    start_episode_cost: float  # J_C of the starting policy in this scope
    break_even_lambda: float | None  # λ_be (None without rewards)
    samples: int
    harmful_samples: int
    prompt_labels: Literal["data", "cost_model"]  # where p_h came from
    # "mirrored": one class had no sample (an already-safe starting policy), so its mean cost is
    # the other class's mean with the sign flipped
    unsafe_cost_source: Literal["samples", "mirrored"] = "samples"

    def as_dict(self) -> dict:
        return asdict(self)


def threshold_for(
    target: float, scope: Scope, *, mean_cost_safe: float, mean_cost_unsafe: float,
    harmful_prompt_share: float, mean_cost_benign: float | None,
) -> float:
    """d from the module formula (pure)."""
    harmful_part = target * mean_cost_unsafe + (1.0 - target) * mean_cost_safe
    if scope == "harmful_prompts" or mean_cost_benign is None:
        return harmful_part
    return harmful_prompt_share * harmful_part + (1.0 - harmful_prompt_share) * mean_cost_benign


def derive_threshold(
    costs: Sequence[float],
    harmful_prompt: Sequence[bool],
    *,
    target: float,
    scope: Scope,
    rewards: Sequence[float] | None = None,
    prompt_labels: Literal["data", "cost_model"] = "data",
) -> Calibration:
    """Calibrate d from per-response costs and their prompts' harmful flags (same length).

    c_u and c_s come from responses to harmful prompts when the data marks prompts; when the prompt
    flags come from the cost model itself (`prompt_labels="cost_model"`), conditioning on them
    would bias the means, so all responses are used.
    """
    if len(costs) != len(harmful_prompt):
        raise ValueError(f"costs and harmful_prompt differ in length: {len(costs)} vs "
                         f"{len(harmful_prompt)}")
    if not 0.0 < target < 1.0:
        raise ValueError(f"target harmful rate must be in (0, 1), got {target}")
    n = len(costs)
    if n == 0:
        raise CalibrationError("no calibration samples; check the prompts data")
    harmful_idx = [i for i in range(n) if harmful_prompt[i]]
    benign_idx = [i for i in range(n) if not harmful_prompt[i]]
    if not harmful_idx:
        raise CalibrationError(
            "no harmful prompts in the calibration set (none marked, none flagged by the cost "
            "model): a harmful-rate budget cannot be calibrated; give a raw `threshold` instead"
        )
    pool = harmful_idx if prompt_labels == "data" else list(range(n))
    unsafe = [costs[i] for i in pool if costs[i] > 0]
    safe = [costs[i] for i in pool if costs[i] <= 0]
    if not unsafe:
        unsafe = [c for c in costs if c > 0]
    if not safe:
        safe = [c for c in costs if c <= 0]
    if not unsafe and not safe:
        raise CalibrationError("no calibration costs; check the cost model")
    c_u, c_s = _mean(unsafe), _mean(safe)
    unsafe_cost_source: Literal["samples", "mirrored"] = "samples"
    if c_u is None or c_s is None:
        # A starting policy that is already safe (typical from round 2 on) gives no unsafe
        # sample, so c_u cannot be measured. The cost model's sign terms (reference §4) train
        # unsafe and safe costs to opposite signs with a similar magnitude (the toy: +3.36 vs
        # −3.34), so mirror the measured class; `unsafe_cost_source` records it.
        if c_u is None:
            assert c_s is not None
            if c_s >= 0:
                raise CalibrationError(
                    "the cost model scored no calibration response as unsafe (cost > 0) and its "
                    "safe responses are not negative, so its scale cannot be estimated; check "
                    "the cost model (sign convention: cost > 0 ⇔ unsafe) or give a raw "
                    "`threshold`")
            c_u = -c_s
        else:
            c_s = -c_u
        unsafe_cost_source = "mirrored"
    p_h = len(harmful_idx) / n
    c_b = _mean([costs[i] for i in benign_idx])
    d = threshold_for(target, scope, mean_cost_safe=c_s, mean_cost_unsafe=c_u,
                      harmful_prompt_share=p_h, mean_cost_benign=c_b)
    start_rate = sum(costs[i] > 0 for i in harmful_idx) / len(harmful_idx)
    scope_idx = harmful_idx if scope == "harmful_prompts" else list(range(n))
    start_jc = sum(costs[i] for i in scope_idx) / len(scope_idx)
    return Calibration(
        target=target, scope=scope, threshold=d, mean_cost_safe=c_s, mean_cost_unsafe=c_u,
        harmful_prompt_share=p_h, mean_cost_benign=c_b, start_harmful_rate=start_rate,
        start_episode_cost=start_jc,
        break_even_lambda=break_even_lambda(costs, harmful_prompt, rewards) if rewards else None,
        samples=n, harmful_samples=len(harmful_idx), prompt_labels=prompt_labels,
        unsafe_cost_source=unsafe_cost_source,
    )


def break_even_lambda(
    costs: Sequence[float], harmful_prompt: Sequence[bool], rewards: Sequence[float],
) -> float | None:
    """λ_be = max(ΔR, 0) / (c_u − c_s) on harmful prompts (None when one class is missing)."""
    idx = [i for i in range(len(costs)) if harmful_prompt[i]]
    unsafe = [i for i in idx if costs[i] > 0]
    safe = [i for i in idx if costs[i] <= 0]
    if not unsafe or not safe:
        return None
    gap_c = _mean([costs[i] for i in unsafe]) - _mean([costs[i] for i in safe])  # type: ignore[operator]
    if gap_c <= 0:
        return None
    gap_r = _mean([rewards[i] for i in unsafe]) - _mean([rewards[i] for i in safe])  # type: ignore[operator]
    return max(gap_r, 0.0) / gap_c


def flag_prompts_by_cost(prompt_ids: Sequence[str], costs: Sequence[float]) -> dict[str, bool]:
    """For data without harmful marks: a prompt is harmful iff any of its samples has cost > 0."""
    flags: dict[str, bool] = {}
    for pid, c in zip(prompt_ids, costs, strict=True):
        flags[pid] = flags.get(pid, False) or c > 0
    return flags
