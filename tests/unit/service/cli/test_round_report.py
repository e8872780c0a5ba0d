"""The per-round report shows round 0 (the starting model) beside every round, the change from the
round before, and flags a round that got worse; eval columns come from the latest finished
evaluate stage (measured together), training columns from each round's PPO-Lagrangian stage."""

from __future__ import annotations

import json

from saferlhf.service.cli.report import has_report, round_report
from saferlhf.v1 import resources_pb2 as pb

SUCCEEDED = pb.ATTEMPT_STATE_SUCCEEDED


def _row(version, round_, harmful, helpful, **extra):
    return {"version": version, "round": round_, "harmful_rate": harmful,
            "helpfulness": helpful, "over_refusal_rate": 0.1, **extra}


REPORT_R2 = [
    _row("sft", 0, 0.5, 0.4),
    _row("round-1", 1, 0.05, 0.7, harmful_rate_delta=-0.45, helpfulness_delta=0.3,
         worsened=False, why=[]),
    _row("round-2", 2, 0.08, 0.65, harmful_rate_delta=0.03, helpfulness_delta=-0.05,
         worsened=True, why=["harmful rate up 3.0 points", "helpfulness down 0.050"]),
]


def _eval(round_, report, state=SUCCEEDED):
    result = {"report": report, "harmful_rate_judge": "synthetic",
              "eval/harmful_rate": report[-1]["harmful_rate"]}
    return pb.Stage(id=f"r{round_}/evaluate", round=round_, kind="evaluate", state=state,
                    result_json=json.dumps(result))


def _lines(text: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in text.splitlines()[1:]
            if line.split() and line.split()[0].isdigit()}


def test_round_0_and_every_round_show_with_deltas_and_the_worse_round_is_flagged():
    stages = [_eval(1, REPORT_R2[:2]), _eval(2, REPORT_R2),
              pb.Stage(id="r2/ppo_lag", round=2, kind="ppo_lag", state=SUCCEEDED)]
    metrics = {"r2/ppo_lag": {"train/lambda": 1.25, "train/cost": -0.5}}
    text = round_report(stages, metrics)
    header = text.splitlines()[0].split()
    assert header[:6] == ["ROUND", "model", "harmful", "Δ", "helpful", "Δ"]
    rows = _lines(text)
    assert rows["0"][:6] == ["0", "sft", "0.500", "-", "0.400", "-"]
    assert rows["1"][:6] == ["1", "round-1", "0.050", "-0.450", "0.700", "+0.300"]
    assert "WORSE" not in " ".join(rows["1"])
    assert rows["2"][:6] == ["2", "round-2", "0.080", "+0.030", "0.650", "-0.050"]
    assert "1.250" in rows["2"] and "-0.500" in rows["2"]
    line2 = next(ln for ln in text.splitlines() if ln.startswith("2 "))
    assert line2.endswith("WORSE: harmful rate up 3.0 points; helpfulness down 0.050")
    assert "rounds 0–2 measured together by r2/evaluate" in text


def test_a_round_whose_eval_is_still_running_shows_its_own_stages_values():
    stages = [_eval(1, REPORT_R2[:2]), _eval(2, REPORT_R2, state=pb.ATTEMPT_STATE_RUNNING),
              pb.Stage(id="r2/ppo_lag", round=2, kind="ppo_lag", state=SUCCEEDED)]
    text = round_report(stages, {"r2/ppo_lag": {"train/lambda": 2.0}})
    rows = _lines(text)
    assert set(rows) == {"0", "1", "2"}
    assert rows["2"][2] == "-" and "2.000" in rows["2"]  # r2's eval has not finished
    assert "rounds 0–1 measured together by r1/evaluate" in text


def test_a_job_without_an_eval_still_reports_training_per_round():
    stages = [pb.Stage(id="r1/ppo_lag", round=1, kind="ppo_lag", state=SUCCEEDED)]
    metrics = {"r1/ppo_lag": {"train/lambda": 1.5}}
    assert has_report(stages, metrics)
    text = round_report(stages, metrics)
    assert set(_lines(text)) == {"1"} and "1.500" in _lines(text)["1"]
    assert "measured together" not in text
    assert not has_report([], {})
