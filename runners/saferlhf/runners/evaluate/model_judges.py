"""Running the judges that need a model (llm, classifier) over the evaluate stage's answers.

`open_model_judges` builds every llm / classifier judge before any answer is generated, so a
missing API key variable or classifier folder fails the stage in seconds (exit 2), not after an
hour of sampling. `apply_model_judges` adds their verdicts to the rows; `pairwise_games` asks the
helpfulness judges about every pair of versions, in both orders (position swap), for the arena.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence
from typing import Any

from saferlhf.runners.common.judge_config import ClassifierJudge, LLMJudge
from saferlhf.runners.evaluate.arena import (
    Game,
    compare_higher,
    games_arena,
    position_swapped_score,
)
from saferlhf.runners.evaluate.judges import Judged

Log = Callable[[str], None]


def open_model_judges(judges: Sequence[Any], output_dir: str) -> dict[str, Any]:
    """name → LLMJudgeRun | ClassifierJudgeRun, for the judges that need a model."""
    from saferlhf.runners.evaluate.classifier import ClassifierJudgeRun
    from saferlhf.runners.evaluate.llm.judge import LLMJudgeRun

    runs: dict[str, Any] = {}
    for i, spec in enumerate(judges):
        if isinstance(spec, LLMJudge):
            runs[spec.name] = LLMJudgeRun(spec, output_dir, field=f"judges[{i}]")
        elif isinstance(spec, ClassifierJudge):
            runs[spec.name] = ClassifierJudgeRun(spec, output_dir, field=f"judges[{i}]")
    return runs


def _progress(name: str, log: Log) -> Callable[[int, int], None]:
    return lambda done, total: log(f"judge {name}: {done}/{total} judged")


def apply_model_judges(rows: list[Judged], runs: dict[str, Any], log: Log) -> list[Judged]:
    """Rows with the verdicts of every single-answer model judge added (pairwise ones skip)."""
    for name, judge in runs.items():
        if getattr(judge.spec, "prompt", None) == "helpfulness":
            continue
        verdicts = judge.judge_answers([(r.prompt, r.response) for r in rows],
                                       progress=_progress(name, log))
        rows = [dataclasses.replace(r, verdicts={**r.verdicts, name: v})
                for r, v in zip(rows, verdicts, strict=True)]
        log(f"judge {name}: {judge.judgements} judged, {judge.cache.hits} from the cache, "
            f"{judge.unparseable} unparseable")
    return rows


def pairwise_games(rows: Sequence[Judged], versions: Sequence[str], judge: Any, *,
                   bootstrap_resamples: int, seed: int, log: Log) -> dict:
    """The helpfulness arena of one pairwise llm judge: for every item (prompt × sample) and
    pair of versions (x, y), ask (A=x, B=y) and (A=y, B=x); x's game score is the mean of the two
    verdicts (arena.position_swapped_score). Unparseable pairs play no game (`dropped`)."""
    by_key = {(r.version, r.key): r for r in rows}
    items = sorted({r.key for r in rows})
    asks: list[tuple[str, str, str]] = []
    plan: list[tuple[Any, str, str]] = []
    for item in items:
        for x, y in itertools.combinations(versions, 2):
            rx, ry = by_key.get((x, item)), by_key.get((y, item))
            if rx is None or ry is None:
                continue
            asks += [(rx.prompt, rx.response, ry.response), (rx.prompt, ry.response, rx.response)]
            plan.append((item, x, y))
    scores = judge.judge_pairs(asks, progress=_progress(judge.spec.name, log))
    games: dict[Any, list[Game]] = {}
    dropped = consistent = 0
    for k, (item, x, y) in enumerate(plan):
        first, second = scores[2 * k], scores[2 * k + 1]
        score = position_swapped_score(first, second)
        if score is None:
            dropped += 1
            continue
        # x's verdict is the same in both orders (won both times, lost both, tied both)
        consistent += compare_higher(first["a"], first["b"]) == compare_higher(second["b"],
                                                                               second["a"])
        games.setdefault(item, []).append(Game(x, y, score))
    out = games_arena(games, list(versions), bootstrap_resamples=bootstrap_resamples, seed=seed)
    played = len(plan) - dropped
    out["dropped_unparseable"] = dropped
    out["position_consistency"] = consistent / played if played else None
    return out
