"""Response constructors and the response distributions that mimic an SFT policy.

Surface forms (≤ 20 words each):
- helpful / compliant: "sure. first A, then B, then C, finally D."  (the task's step words)
- refusal:             "sorry, i can not help with that."  (one of 3 phrasings)
- redirection:         refusal + " instead, try X Y."  (the category's safe alternative)
Degraded helpful answers drop a step or swap one for an off-topic step word (toy §1).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from saferlhf.runners.synthetic.vocab import ALTERNATIVES, BENIGN_TASKS, OPENERS, REFUSALS, Task


def steps_answer(steps: Sequence[str], opener: str = "sure.") -> str:
    """"sure. first A, then B, finally C." for any number (≥ 1) of steps."""
    if len(steps) == 1:
        return f"{opener} just {steps[0]}."
    middle = "".join(f" then {s}," for s in steps[1:-1])
    return f"{opener} first {steps[0]},{middle} finally {steps[-1]}."


def refusal(rng: random.Random | None = None) -> str:
    return REFUSALS[0] if rng is None else rng.choice(REFUSALS)


def redirection(category: str, rng: random.Random | None = None) -> str:
    a, b = ALTERNATIVES[category]
    return f"{refusal(rng)} instead, try {a} {b}."


def helpful(task: Task, rng: random.Random) -> str:
    return steps_answer(task.steps, rng.choice(OPENERS))


def dropped_step(task: Task, rng: random.Random, n_drop: int = 1) -> str:
    """Helpfulness 1 − n_drop/4."""
    drop = set(rng.sample(range(4), n_drop))
    return steps_answer([s for i, s in enumerate(task.steps) if i not in drop], rng.choice(OPENERS))


def off_topic_step(task: Task, rng: random.Random, n_swap: int = 1) -> str:
    """One (or more) step replaced by another benign task's step: helpfulness 1 − n_swap/2."""
    others = [w for t in BENIGN_TASKS if t != task for w in t.steps]
    steps = list(task.steps)
    for i in rng.sample(range(4), n_swap):
        steps[i] = rng.choice(others)
    return steps_answer(steps, rng.choice(OPENERS))


def _pick(rng: random.Random, table: Sequence[tuple[float, str]]) -> str:
    x = rng.random() * sum(w for w, _ in table)
    for weight, mode in table:
        x -= weight
        if x < 0:
            return mode
    return table[-1][1]


def render(mode: str, task: Task, rng: random.Random) -> str:
    """One response of a named mode to a task."""
    if mode in ("helpful", "comply"):
        return helpful(task, rng)
    if mode == "drop1":
        return dropped_step(task, rng, 1)
    if mode == "drop2":
        return dropped_step(task, rng, 2)
    if mode == "offtopic1":
        return off_topic_step(task, rng, 1)
    if mode == "offtopic2":
        return off_topic_step(task, rng, 2)
    if mode == "refuse":
        return refusal(rng)
    if mode == "redirect":
        return redirection(task.category, rng)
    raise ValueError(f"unknown response mode {mode!r}")


def sft_mode(task: Task, rng: random.Random, harmful_compliance_rate: float) -> str:
    """SFT demonstrations (toy §1): benign 70% perfect, 10% one step dropped, 10% one off-topic
    step, 10% over-refusal; harmful: comply at `harmful_compliance_rate`, the rest split
    evenly between refusal and redirection."""
    if not task.is_harmful:
        return _pick(rng, [(0.7, "helpful"), (0.1, "drop1"), (0.1, "offtopic1"), (0.1, "refuse")])
    if rng.random() < harmful_compliance_rate:
        return "comply"
    return "refuse" if rng.random() < 0.5 else "redirect"


def policy_mode(task: Task, rng: random.Random) -> str:
    """What an SFT policy samples, a little wider than its demonstrations (for preference pairs):
    the SFT modes plus rarer, worse variants (two steps dropped or off-topic, partial
    compliance) so reward and cost models see the errors a sampled policy makes."""
    if not task.is_harmful:
        return _pick(
            rng,
            [(0.55, "helpful"), (0.1, "drop1"), (0.05, "drop2"), (0.1, "offtopic1"),
             (0.05, "offtopic2"), (0.15, "refuse")],
        )
    return _pick(rng, [(0.4, "comply"), (0.1, "drop1"), (0.25, "refuse"), (0.25, "redirect")])
