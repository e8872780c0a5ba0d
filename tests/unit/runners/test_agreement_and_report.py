"""Judge agreement (hand-computed Cohen's κ, the disagreement file) and the round report's deltas
and worsened flag, on hand-made verdicts."""

import math

import pytest
from saferlhf.runners.evaluate.agreement import agreement_table, cohen_kappa, disagreements
from saferlhf.runners.evaluate.arena import Game, games_arena, position_swapped_score
from saferlhf.runners.evaluate.judges import Judged, Verdict
from saferlhf.runners.evaluate.report import flat_report, version_report


def row(i: int, **verdicts: Verdict) -> Judged:
    return Judged(version="v", prompt_set="s", prompt_index=i, sample_index=0, prompt=f"p{i}",
                  response=f"r{i}", category=None, is_harmful_prompt=True, verdicts=verdicts)


def test_cohen_kappa_by_hand():
    # p_o = 3/4; p1 = 1/2, p2 = 1/4 → p_e = 1/2·1/4 + 1/2·3/4 = 1/2; κ = (3/4 − 1/2)/(1/2) = 1/2
    pairs = [(True, True), (True, False), (False, False), (False, False)]
    assert cohen_kappa(pairs) == pytest.approx(0.5)
    assert cohen_kappa([(True, False), (False, True)]) == pytest.approx(-1.0)
    assert cohen_kappa([(True, True), (True, True)]) is None  # p_e = 1: undefined
    assert cohen_kappa([]) is None


def test_the_agreement_table_counts_only_answers_both_judges_judged():
    h = lambda harmful, refusal=None: Verdict(harmful=harmful, refusal=refusal)  # noqa: E731
    rows = [row(0, a=h(True, False), b=h(True, False)),
            row(1, a=h(True, False), b=h(False, True)),
            row(2, a=h(False, True), b=h(False, True)),
            row(3, a=h(False, True), b=h(False, True)),
            row(4, a=h(True), b=Verdict(unparseable=True))]  # b has no verdict: left out
    table = {t["question"]: t for t in agreement_table(rows, ["a", "b"])}
    assert table["harmful"]["n"] == 4 and table["harmful"]["agreement"] == 0.75
    assert table["harmful"]["cohen_kappa"] == pytest.approx(0.5)
    assert table["refusal"]["n"] == 4 and table["refusal"]["positive_rate"] == [0.5, 0.75]
    split = disagreements(rows, ["a", "b"])
    assert [d["prompt_index"] for d in split] == [1]
    assert split[0]["disagree_on"] == ["harmful", "refusal"]
    assert split[0]["verdicts"]["a"] == {"harmful": True, "refusal": False}


def test_position_swapped_pairwise_games_score_a_position_biased_judge_as_a_draw():
    assert position_swapped_score({"a": 8, "b": 3}, {"a": 3, "b": 8}) == 1.0  # x wins twice
    assert position_swapped_score({"a": 8, "b": 3}, {"a": 8, "b": 3}) == 0.5  # always "A"
    assert position_swapped_score({"a": 5, "b": 5}, {"a": 2, "b": 9}) == 0.75
    assert position_swapped_score(None, {"a": 1, "b": 2}) is None
    games = {i: [Game("sft", "round-1", 0.0)] for i in range(6)}
    out = games_arena(games, ["sft", "round-1"], bootstrap_resamples=20, seed=0)
    assert out["win_rates"]["round-1"]["sft"] == 1.0
    # two versions: ΔR = 400·log10((wins + ½) / (losses + ½)) with one virtual draw
    assert out["elo"]["round-1"] - 1000.0 == pytest.approx(400 * math.log10(13))
    low, high = out["elo_ci95"]["round-1"]
    assert low <= out["elo"]["round-1"] <= high


def _tables(harmful, helpful):
    return {"overall": {"harmful_rate/kw": harmful, "helpfulness": helpful,
                        "over_refusal_rate": 0.1}}


def test_a_version_is_worse_when_harm_rises_or_helpfulness_falls_beyond_the_tolerance():
    tables = {"sft": _tables(0.5, 0.4), "round-1": _tables(0.05, 0.7),
              "round-2": _tables(0.08, 0.65)}
    versions = [("sft", 0), ("round-1", 1), ("round-2", 2)]
    rows = version_report(tables, versions, harmful_judge="kw", arenas={})
    assert [r["round"] for r in rows] == [0, 1, 2] and "worsened" not in rows[0]
    assert rows[1]["harmful_rate_delta"] == pytest.approx(-0.45) and not rows[1]["worsened"]
    assert rows[2]["worsened"] and rows[2]["why"] == ["harmful rate up 3.0 points",
                                                      "helpfulness down 0.050"]
    flat = flat_report(rows)
    assert flat["eval/worsened"] == 1.0
    assert flat["eval/harmful_rate_delta"] == pytest.approx(0.03)
    lenient = version_report(tables, versions, harmful_judge="kw", arenas={}, tolerance=0.05)
    assert not lenient[2]["worsened"]
    assert flat_report(rows[:1]) == {}


def test_without_an_exact_judge_helpfulness_comes_from_the_arena_against_the_previous_version():
    tables = {"sft": _tables(0.2, None), "round-1": _tables(0.1, None)}
    arenas = {"reward": {"win_rates": {"round-1": {"sft": 0.3}, "sft": {"round-1": 0.7}},
                         "elo": {"sft": 1000.0, "round-1": 850.0}},
              "gpt": {"win_rates": {"round-1": {"sft": 0.6}, "sft": {"round-1": 0.4}},
                      "elo": {"sft": 1000.0, "round-1": 1070.0}}}
    versions = [("sft", 0), ("round-1", 1)]
    by_reward = version_report(tables, versions, harmful_judge="kw", arenas=arenas)
    assert by_reward[1]["worsened"] and "reward games" in by_reward[1]["why"][0]
    by_llm = version_report(tables, versions, harmful_judge="kw", arenas=arenas,
                            llm_helpfulness=["gpt"])
    assert not by_llm[1]["worsened"] and by_llm[1]["win_rate_vs_previous"] == 0.6
    assert by_llm[1]["elo"] == 1070.0
