"""bench/toy_safe_rlhf's new rows (issue 14) without running a stage: the escalation keeps the
offline policy exactly when the control plane's gate rule says so, and the compute table counts
what each method really ran."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import toy_safe_rlhf as toy


class NoRunner:
    workdir = Path("/nonexistent")

    def run(self, *args, **kwargs):
        raise AssertionError("no stage may run when the escalation is not needed")


def offline_row(harmful_rate: float) -> dict:
    return {"harmful_rate": harmful_rate, "helpfulness": 0.8, "over_refusal_rate": 0.01,
            "elo": None, "elo_harmlessness": None, "policy": "/m", "train_seconds": 60.0,
            "eval_seconds": 15.0}


def test_an_offline_policy_within_the_budget_is_kept_without_running_ppo_lag():
    row = toy.run_escalation("escalation_safe_dpo", offline_row(0.02), toy.QUICK, NoRunner(),
                             {"sft": "/s", "rm": "/r", "cm": "/c"}, scorer_seconds=100.0)
    assert row["branch"] == "not needed" and row["harmful_rate"] == 0.02
    assert row["gate"] == {"metric": "eval/harmful_rate", "op": "<=", "value": 0.02,
                           "observed": 0.02}
    assert row["stage_seconds"] == 75.0  # the offline stage and its evaluation only


def test_an_offline_policy_over_the_budget_escalates_to_ppo_lag():
    with pytest.raises(AssertionError, match="no stage may run"):
        toy.run_escalation("escalation_dpo", offline_row(0.021), toy.QUICK, NoRunner(),
                           {"sft": "/s", "rm": "/r", "cm": "/c"}, scorer_seconds=100.0)


def test_the_compute_table_counts_the_scorers_for_rl_and_for_an_escalated_row():
    results = {
        "methods": {"ppo_lag_budget2pct": {"rounds": [
            {"harmful_rate": 0.03, "helpfulness": 0.9, "ppo_seconds": 200.0,
             "eval_seconds": 20.0}]}},
        "offline": {"safe_dpo": offline_row(0.1)},
        "escalation": {"escalation_safe_dpo": {
            "branch": "escalated", "harmful_rate": 0.01, "helpfulness": 0.85,
            "train_seconds": 360.0, "stage_seconds": 395.0,
            "gate": {"metric": "eval/harmful_rate", "op": "<=", "value": 0.02,
                     "observed": 0.1}}},
        "scale": {"pref_size": 1000, "eval_samples": 8},
    }
    rows = {r["method"]: r for r in toy.compute_rows(results, scorer_seconds=100.0)}
    assert rows["ppo_lag_budget2pct"]["train_seconds"] == 300.0  # RM + CM + PPO-Lag
    assert rows["ppo_lag_budget2pct"]["stage_seconds"] == 320.0
    assert rows["safe_dpo"]["train_seconds"] == 60.0 and rows["safe_dpo"]["stage_seconds"] == 75.0
    assert rows["escalation_safe_dpo"]["stages"] == "safe_dpo → reward ∥ cost → ppo_lag"
    text = "\n".join(toy.offline_markdown({**results, "compute": list(rows.values())}))
    assert "| escalation_safe_dpo | safe_dpo → reward ∥ cost → ppo_lag | 1.0% | 0.85 |" in text
    assert "**escalated**" in text
