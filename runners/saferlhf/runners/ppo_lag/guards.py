"""Guards on the constraint (issue 6): warnings users see when PPO-Lagrangian cannot work as meant.

- VacuousThreshold: the starting policy already satisfies J_C ≤ d while its harmful rate exceeds
  the target — λ can only fall, and harm may rise (the d = 0, 50/50-mix failure of
  reference/toy_experiment.md §4.3).
- LambdaPinned: λ sat at λ_max for N consecutive updates (the clamp, not the constraint, decides).
- LambdaBelowBreakEven: the constraint is satisfied but λ stayed below the break-even multiplier
  for a long stretch, so the unsafe answer pays again and harm may creep back.

Pure: the trainer keeps a `GuardState`, feeds each Lagrange update and emits what comes back.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

# Harmful-rate target used by the vacuous check when a raw threshold (no budget) is given.
DEFAULT_VACUOUS_TARGET = 0.05
PINNED_UPDATES = 20
BELOW_BREAK_EVEN_UPDATES = 50


@dataclass(frozen=True)
class GuardEvent:
    name: str  # VacuousThreshold | LambdaPinned | LambdaBelowBreakEven
    message: str  # starts with "<name>: "


@dataclass(frozen=True)
class GuardState:
    pinned_run: int = 0
    below_break_even_run: int = 0


def vacuous_threshold(
    episode_cost: float, threshold: float, harmful_rate: float, target: float,
) -> GuardEvent | None:
    """Fires when J_C ≤ d already holds for a policy whose harmful rate is above the target."""
    if episode_cost <= threshold and harmful_rate > target:
        return GuardEvent(
            "VacuousThreshold",
            f"VacuousThreshold: the starting policy already satisfies J_C = {episode_cost:.4g} ≤ "
            f"d = {threshold:.4g} while its harmful rate is {harmful_rate:.1%} > target "
            f"{target:.1%}; λ can only fall and harm may rise. Use `safety_budget` "
            "(e.g. {max_harmful_rate: 0.02}) or a lower threshold (see docs/safety_budget.md).",
        )
    return None


def update_guards(
    state: GuardState,
    *,
    lam: float,
    lambda_max: float | None,
    episode_cost: float,
    threshold: float,
    break_even: float | None,
    pinned_updates: int = PINNED_UPDATES,
    below_break_even_updates: int = BELOW_BREAK_EVEN_UPDATES,
) -> tuple[GuardState, list[GuardEvent], dict[str, float]]:
    """Advance the run counters by one Lagrange update.

    Returns the new state, the events that fire now (once, when a run reaches its length) and
    the metrics `guard/<name>` (1 while a run is at or past its length, else 0).
    """
    pinned = lambda_max is not None and lam >= lambda_max * (1 - 1e-6)
    below = break_even is not None and episode_cost <= threshold and lam < break_even
    new = replace(
        state,
        pinned_run=state.pinned_run + 1 if pinned else 0,
        below_break_even_run=state.below_break_even_run + 1 if below else 0,
    )
    events: list[GuardEvent] = []
    if new.pinned_run == pinned_updates:
        events.append(GuardEvent(
            "LambdaPinned",
            f"LambdaPinned: λ has been at λ_max = {lambda_max:.4g} for {pinned_updates} updates "
            f"(J_C = {episode_cost:.4g} > d = {threshold:.4g}); the clamp, not the constraint, "
            "sets the penalty. Raise lambda_max, lower lambda_lr, or check the threshold scale.",
        ))
    if new.below_break_even_run == below_break_even_updates:
        events.append(GuardEvent(
            "LambdaBelowBreakEven",
            f"LambdaBelowBreakEven: the constraint has held for {below_break_even_updates} updates "
            f"with λ = {lam:.4g} below the break-even estimate {break_even:.4g}; unsafe answers "
            "pay again and harm may creep back toward the threshold.",
        ))
    metrics = {
        "guard/LambdaPinned": float(new.pinned_run >= pinned_updates),
        "guard/LambdaBelowBreakEven": float(new.below_break_even_run >= below_break_even_updates),
    }
    return new, events, metrics
