"""The benchmark's splits: `dataset(split, size=, seed=, label_noise=)` → records.

| split              | records          | prompts from                         |
|--------------------|------------------|--------------------------------------|
| sft                | Supervised       | training templates × training combos |
| preference         | Preference       | training (labelled by exact helpfulness; ties dropped) |
| safety_preference  | SafetyPreference | training (labelled by exact harm)    |
| safety_labelled_preference | SafetyLabelledPreference | training (as preference, plus |
|                    |                  | each response's exact harm: SafeDPO) |
| prompts            | PromptOnly       | training, 50% harmful                |
| calibration        | PromptOnly       | training, 50% harmful, another stream|
| eval               | PromptOnly       | held-out templates + held-out combos only |

Each split draws from its own `random.Random(f"{split}:{seed}")`, so a split is a pure function
of (split, size, seed, label_noise, options) and splits never share a random stream.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from saferlhf.runners.common.records import (
    Preference,
    PromptOnly,
    Record,
    SafetyLabelledPreference,
    SafetyPreference,
    Supervised,
)
from saferlhf.runners.synthetic.judge import judge
from saferlhf.runners.synthetic.oracle import harm_level
from saferlhf.runners.synthetic.responses import policy_mode, render, sft_mode
from saferlhf.runners.synthetic.vocab import (
    HELDOUT_COMBOS,
    HELDOUT_TEMPLATES,
    TASKS,
    TRAIN_COMBOS,
    TRAIN_TEMPLATES,
    Task,
)

SPLITS = ("sft", "preference", "safety_preference", "prompts", "eval", "calibration",
          "safety_labelled_preference")
DEFAULT_SIZES = {
    "sft": 8192, "preference": 4000, "safety_preference": 4000, "prompts": 1024,
    "calibration": 512, "safety_labelled_preference": 4000,
}  # eval: every held-out prompt once (see eval_prompts)

_TRAIN_BY_CLASS: dict[bool, list[tuple[str, Task]]] = {True: [], False: []}
for _i, _j in TRAIN_COMBOS:
    _TRAIN_BY_CLASS[TASKS[_j].is_harmful].append((TRAIN_TEMPLATES[_i].format(t=TASKS[_j].phrase),
                                                   TASKS[_j]))


def training_prompt(rng: random.Random, harmful: bool) -> tuple[str, Task]:
    """A (prompt, task) drawn uniformly from the training combos of one class."""
    return rng.choice(_TRAIN_BY_CLASS[harmful])


def eval_prompts() -> list[tuple[str, Task, str]]:
    """Every held-out prompt once, as (prompt, task, subset).

    subset ∈ heldout_template | heldout_combo."""
    out = [(tpl.format(t=task.phrase), task, "heldout_template")
           for tpl in HELDOUT_TEMPLATES for task in TASKS]
    out += [(TRAIN_TEMPLATES[i].format(t=TASKS[j].phrase), TASKS[j], "heldout_combo")
            for i, j in sorted(HELDOUT_COMBOS)]
    return out


def _prompt_records(split: str, size: int, rng: random.Random, harmful_fraction: float
                    ) -> list[Record]:
    out: list[Record] = []
    for row in range(1, size + 1):
        prompt, task = training_prompt(rng, rng.random() < harmful_fraction)
        out.append(PromptOnly(prompt, f"synthetic:{split}", row, task.category, task.is_harmful))
    return out


def _eval_records(size: int | None, rng: random.Random) -> list[Record]:
    pool = eval_prompts()
    if size is not None:
        order = list(range(len(pool)))
        rng.shuffle(order)
        pool = [pool[order[k % len(order)]] for k in range(size)]
    return [PromptOnly(p, f"synthetic:eval/{subset}", row, task.category, task.is_harmful)
            for row, (p, task, subset) in enumerate(pool, start=1)]


def _sft(size: int, rng: random.Random, harmful_fraction: float, compliance: float
         ) -> list[Record]:
    out: list[Record] = []
    for row in range(1, size + 1):
        prompt, task = training_prompt(rng, rng.random() < harmful_fraction)
        out.append(Supervised(prompt, render(sft_mode(task, rng, compliance), task, rng),
                              "synthetic:sft", row))
    return out


def sample_pair(rng: random.Random, harmful_fraction: float) -> tuple[str, str, str]:
    """(prompt, response_a, response_b): two distinct responses a sampled SFT policy might give."""
    prompt, task = training_prompt(rng, rng.random() < harmful_fraction)
    while True:
        a = render(policy_mode(task, rng), task, rng)
        b = render(policy_mode(task, rng), task, rng)
        if a != b:
            return prompt, a, b


def _pairs(size: int, rng: random.Random, harmful_fraction: float,
           make: Callable[[str, str, str, int], Record | None]) -> list[Record]:
    out: list[Record] = []
    while len(out) < size:
        prompt, a, b = sample_pair(rng, harmful_fraction)
        record = make(prompt, a, b, len(out) + 1)
        if record is not None:
            out.append(record)
    return out


def dataset(split: str, *, size: int | None = None, seed: int = 42, label_noise: float = 0.0,
            harmful_compliance_rate: float = 0.5, harmful_fraction: float = 0.5) -> list[Record]:
    """Generate one split deterministically (see the module table).

    `label_noise` flips that fraction of pair labels (preference, safety_labelled_preference:
    better ↔ worse, each response keeping its own safety label; safety: the two responses swap
    places while the is_safe labels keep theirs, i.e. each response also gets the other's safety
    label, so a row never has an unsafe safer response beside a safe unsafer one).
    `harmful_compliance_rate` is the SFT share of harmful prompts answered with compliance.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown synthetic split {split!r}; expected one of {', '.join(SPLITS)}")
    if not 0.0 <= label_noise <= 0.5:
        raise ValueError(f"label_noise must be in [0, 0.5], got {label_noise}")
    if not 0.0 <= harmful_compliance_rate <= 1.0:
        raise ValueError(
            f"harmful_compliance_rate must be in [0, 1], got {harmful_compliance_rate}"
        )
    if size is not None and size <= 0:
        raise ValueError(f"size must be > 0, got {size}")
    rng = random.Random(f"{split}:{seed}")
    if split == "eval":
        return _eval_records(size, rng)
    n = size if size is not None else DEFAULT_SIZES[split]
    if split in ("prompts", "calibration"):
        return _prompt_records(split, n, rng, harmful_fraction)
    if split == "sft":
        return _sft(n, rng, harmful_fraction, harmful_compliance_rate)

    def preference(prompt: str, a: str, b: str, row: int) -> Record | None:
        ha, hb = judge(prompt, a).helpfulness, judge(prompt, b).helpfulness
        if ha == hb:
            return None  # ties carry no helpfulness preference
        better, worse = (a, b) if ha > hb else (b, a)
        if rng.random() < label_noise:
            better, worse = worse, better
        return Preference(prompt, better, worse, "synthetic:preference", row)

    def safety(prompt: str, a: str, b: str, row: int) -> Record | None:
        la, lb = harm_level(a), harm_level(b)
        a_first = la < lb or (la == lb and rng.random() < 0.5)
        safer, unsafer = (a, b) if a_first else (b, a)
        s_safe, u_safe = harm_level(safer) == 0, harm_level(unsafer) == 0
        if rng.random() < label_noise:  # the labels stay with the ranking: rows stay consistent
            safer, unsafer = unsafer, safer
        return SafetyPreference(prompt, safer, unsafer, s_safe, u_safe,
                                "synthetic:safety_preference", row)

    def labelled(prompt: str, a: str, b: str, row: int) -> Record | None:
        ha, hb = judge(prompt, a).helpfulness, judge(prompt, b).helpfulness
        if ha == hb:
            return None  # ties carry no helpfulness preference
        better, worse = (a, b) if ha > hb else (b, a)
        if rng.random() < label_noise:
            better, worse = worse, better
        return SafetyLabelledPreference(prompt, better, worse, harm_level(better) == 0,
                                        harm_level(worse) == 0,
                                        "synthetic:safety_labelled_preference", row)

    make = {"preference": preference, "safety_preference": safety,
            "safety_labelled_preference": labelled}[split]
    return _pairs(n, rng, harmful_fraction, make)
