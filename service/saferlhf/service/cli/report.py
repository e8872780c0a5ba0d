"""The per-round report that `saferlhf run`, `get` and `watch` show: round 0 (the SFT or starting
model) beside every round, the change from the round before, and a flag on a round that made
things worse.

Where the numbers come from:
- harmful, helpful, over-refusal and their changes: the round report of the **latest finished
  evaluate stage** (its result's `report`): every eval answers with the SFT model and every round
  so far, so those rows were measured together — same prompts, sampling seeds, judges and cost
  model — and the changes compare like with like. A round past that stage shows its own stages'
  latest values until its eval finishes;
- λ, reward, cost, train harmful: each round's PPO-Lagrangian stage (results and live metrics);
- flag: `WORSE: …` when the evaluate stage found the round worse than the one before (harm up
  or helpfulness down by more than `eval.regression_tolerance`; docs/evaluation.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from saferlhf.service.cli.tables import fmt_delta, fmt_value, table
from saferlhf.v1 import resources_pb2 as pb

# The eval columns, as (label, key in a report row, metric key of a stage's own values).
EVAL_COLUMNS = (("harmful", "harmful_rate", "eval/harmful_rate"),
                ("helpful", "helpfulness", "eval/helpfulness"),
                ("over-refusal", "over_refusal_rate", "eval/over_refusal_rate"))
DELTA_OF = {"harmful_rate": "harmful_rate_delta", "helpfulness": "helpfulness_delta"}
# Training columns: (label, metric key).
TRAIN_COLUMNS = (("λ", "train/lambda"), ("reward", "train/reward"), ("cost", "train/cost"),
                 ("train harmful", "train/harmful_rate"))
REPORT_KEYS = {k for *_, k in EVAL_COLUMNS} | {k for _, k in TRAIN_COLUMNS}


def _result(stage: pb.Stage) -> dict[str, Any]:
    try:
        loaded = json.loads(stage.result_json) if stage.result_json else {}
    except json.JSONDecodeError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def per_round(stages: Iterable[pb.Stage],
              metrics: Mapping[str, Mapping[str, float]]) -> dict[int, dict[str, float]]:
    """round → {metric key: last value} merged over the round's stages (later stages win)."""
    rounds: dict[int, dict[str, float]] = {}
    for s in stages:
        merged = rounds.setdefault(s.round, {})
        merged.update({k: float(v) for k, v in _result(s).items()
                       if isinstance(v, int | float) and not isinstance(v, bool)})
        merged.update(metrics.get(s.id, {}))
    return rounds


def latest_eval_report(stages: Iterable[pb.Stage]) -> tuple[pb.Stage, list[dict]] | None:
    """The finished evaluate stage of the highest round that wrote a round report."""
    found = None
    for s in stages:
        if s.kind != "evaluate" or s.state != pb.ATTEMPT_STATE_SUCCEEDED:
            continue
        rows = _result(s).get("report")
        if isinstance(rows, list) and rows and (found is None or s.round > found[0].round):
            found = (s, [r for r in rows if isinstance(r, dict) and isinstance(r.get("round"),
                                                                                int)])
    return found


def has_report(stages: Iterable[pb.Stage], metrics: Mapping[str, Mapping[str, float]]) -> bool:
    """Whether any round has a value for any report column."""
    stages = list(stages)
    return latest_eval_report(stages) is not None or any(
        REPORT_KEYS & set(v) for v in per_round(stages, metrics).values())


def _flag(row: Mapping[str, Any] | None) -> str:
    if not row or not row.get("worsened"):
        return ""
    return "WORSE: " + "; ".join(str(w) for w in row.get("why", []))


def round_report(stages: Iterable[pb.Stage],
                 metrics: Mapping[str, Mapping[str, float]]) -> str:
    stages = list(stages)
    rounds = per_round(stages, metrics)
    found = latest_eval_report(stages)
    measured = {r["round"]: r for r in found[1]} if found else {}
    header = ["ROUND", "model"]
    for label, key, _ in EVAL_COLUMNS:
        header += [label, "Δ"] if key in DELTA_OF else [label]
    header += [label for label, _ in TRAIN_COLUMNS] + ["flag"]
    rows = []
    for r in sorted(set(rounds) | set(measured)):
        values, row = rounds.get(r, {}), measured.get(r)
        line = [str(r), str(row.get("version", "")) if row else ("sft" if r == 0 else "")]
        for _, key, metric in EVAL_COLUMNS:
            line.append(fmt_value(row.get(key) if row else values.get(metric)))
            if key in DELTA_OF:
                line.append(fmt_delta(row.get(DELTA_OF[key]) if row else None))
        line += [fmt_value(values.get(k)) for _, k in TRAIN_COLUMNS]
        line.append(_flag(row))
        rows.append(line)
    text = table(rows, header)
    if found:
        stage, report = found
        span = f"{report[0]['round']}–{report[-1]['round']}" if len(report) > 1 else str(
            report[0]["round"])
        judge = _result(stage).get("harmful_rate_judge")
        text += (f"\nrounds {span} measured together by {stage.id} (same prompts, judges and "
                 f"cost model; harmful = the {judge or '?'} judge's rate); λ, reward, cost: each "
                 "round's PPO-Lagrangian training")
    return text
