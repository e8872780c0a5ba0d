"""Safety budget → threshold derivation and the guards, on hand-made score distributions."""

from __future__ import annotations

import pytest
from saferlhf.runners.ppo_lag.calibration import (
    CalibrationError,
    break_even_lambda,
    derive_threshold,
    flag_prompts_by_cost,
    threshold_for,
)
from saferlhf.runners.ppo_lag.guards import GuardState, update_guards, vacuous_threshold


def _toy_mix(n_harmful: int, n_unsafe: int, n_benign: int, *, unsafe=1.0, safe=-1.0):
    """Costs and prompt flags: n_unsafe of the harmful prompts answered harmfully."""
    costs = [unsafe] * n_unsafe + [safe] * (n_harmful - n_unsafe) + [safe] * n_benign
    harmful = [True] * n_harmful + [False] * n_benign
    return costs, harmful


def test_harmful_prompt_scope_interpolates_between_the_safe_and_unsafe_means():
    costs = [3.0, 4.0, -2.0, -4.0, -3.0]  # c_u = 3.5, c_s = −3 on harmful prompts
    harmful = [True, True, True, True, False]
    cal = derive_threshold(costs, harmful, target=0.1, scope="harmful_prompts")
    assert cal.mean_cost_unsafe == pytest.approx(3.5)
    assert cal.mean_cost_safe == pytest.approx(-3.0)
    assert cal.threshold == pytest.approx(0.1 * 3.5 + 0.9 * -3.0)
    assert cal.start_harmful_rate == pytest.approx(0.5)
    assert cal.start_episode_cost == pytest.approx((3 + 4 - 2 - 4) / 4)
    assert cal.harmful_prompt_share == pytest.approx(0.8)


def test_all_prompt_scope_reproduces_the_toy_experiments_hand_set_threshold():
    """±1 costs, half the prompts benign: d = h* − 1, i.e. −0.96 for 4% (toy_experiment §3)."""
    costs, harmful = _toy_mix(n_harmful=50, n_unsafe=25, n_benign=50)
    cal = derive_threshold(costs, harmful, target=0.04, scope="all_prompts")
    assert cal.threshold == pytest.approx(-0.96)
    assert cal.mean_cost_benign == pytest.approx(-1.0)
    assert cal.start_episode_cost == pytest.approx(-0.5)


def test_a_learned_cost_scale_moves_the_threshold_with_it():
    """A ±3.35 cost model needs a threshold in its own units (toy_experiment §6.1)."""
    costs, harmful = _toy_mix(40, 20, 40, unsafe=3.35, safe=-3.35)
    cal = derive_threshold(costs, harmful, target=0.02, scope="harmful_prompts")
    assert cal.threshold == pytest.approx(0.02 * 3.35 - 0.98 * 3.35)
    assert threshold_for(0.02, "harmful_prompts", mean_cost_safe=-1, mean_cost_unsafe=1,
                         harmful_prompt_share=0.5, mean_cost_benign=-1) == pytest.approx(-0.96)


def test_break_even_lambda_is_the_reward_gap_over_the_cost_gap():
    costs = [1.0, -1.0, -1.0, -1.0]
    harmful = [True, True, True, False]
    rewards = [1.0, 0.5, 0.0, 0.9]  # unsafe R = 1, safe R = 0.25 → ΔR = 0.75, ΔC = 2
    assert break_even_lambda(costs, harmful, rewards) == pytest.approx(0.375)
    cal = derive_threshold(costs, harmful, target=0.1, scope="harmful_prompts", rewards=rewards)
    assert cal.break_even_lambda == pytest.approx(0.375)


def test_an_already_safe_starting_policy_mirrors_the_safe_cost_for_the_unsafe_one():
    # Round 2 starts from a safe policy: no response costs > 0. c_s = mean(-3, -3, -2) on the
    # harmful prompts = -8/3, so c_u is taken as +8/3 and d = 0.02·8/3 + 0.98·(-8/3).
    cal = derive_threshold([-3.0, -3.0, -2.0, -4.0], [True, True, True, False], target=0.02,
                           scope="harmful_prompts")
    assert cal.unsafe_cost_source == "mirrored"
    assert cal.mean_cost_unsafe == pytest.approx(8 / 3)
    assert cal.threshold == pytest.approx(0.02 * 8 / 3 + 0.98 * (-8 / 3))
    assert cal.start_harmful_rate == 0.0


def test_calibration_fails_clearly_when_the_cost_model_never_flags():
    with pytest.raises(CalibrationError, match="unsafe"):  # not even negative: no scale
        derive_threshold([0.0, -0.0], [True, False], target=0.02, scope="harmful_prompts")
    with pytest.raises(CalibrationError, match="no harmful prompts"):
        derive_threshold([1.0, -2.0], [False, False], target=0.02, scope="harmful_prompts")


def test_unmarked_prompts_are_flagged_when_any_sample_is_unsafe():
    flags = flag_prompts_by_cost(["a", "a", "b", "b"], [-1.0, 0.5, -1.0, -0.2])
    assert flags == {"a": True, "b": False}


def test_the_vacuous_threshold_guard_fires_for_d_zero_on_a_half_benign_mix():
    costs, harmful = _toy_mix(n_harmful=50, n_unsafe=25, n_benign=50)
    cal = derive_threshold(costs, harmful, target=0.02, scope="all_prompts")
    event = vacuous_threshold(cal.start_episode_cost, 0.0, cal.start_harmful_rate, 0.02)
    assert event is not None and event.message.startswith("VacuousThreshold:")
    # the calibrated threshold itself is not vacuous: the starting policy violates it
    assert vacuous_threshold(cal.start_episode_cost, cal.threshold, cal.start_harmful_rate,
                             0.02) is None


def test_lambda_pinned_fires_once_after_n_updates_at_lambda_max():
    state, fired = GuardState(), []
    for _ in range(7):
        state, events, metrics = update_guards(state, lam=5.0, lambda_max=5.0, episode_cost=1.0,
                                               threshold=0.0, break_even=None, pinned_updates=5)
        fired += events
    assert [e.name for e in fired] == ["LambdaPinned"]
    assert fired[0].message.startswith("LambdaPinned:")
    assert metrics["guard/LambdaPinned"] == 1.0
    state, _, metrics = update_guards(state, lam=4.0, lambda_max=5.0, episode_cost=1.0,
                                      threshold=0.0, break_even=None, pinned_updates=5)
    assert state.pinned_run == 0 and metrics["guard/LambdaPinned"] == 0.0


def test_lambda_below_break_even_fires_only_while_the_constraint_holds():
    state, fired = GuardState(), []
    for cost in [-1.0, -1.0, 0.5, -1.0, -1.0, -1.0]:
        state, events, _ = update_guards(state, lam=0.1, lambda_max=5.0, episode_cost=cost,
                                         threshold=0.0, break_even=0.25,
                                         below_break_even_updates=3)
        fired += events
    assert [e.name for e in fired] == ["LambdaBelowBreakEven"]
    assert fired[0].message.startswith("LambdaBelowBreakEven:")
    _, events, _ = update_guards(GuardState(), lam=0.3, lambda_max=5.0, episode_cost=-1.0,
                                 threshold=0.0, break_even=0.25, below_break_even_updates=1)
    assert events == []
