"""Arena maths: win rates and Bradley–Terry Elo on hand-made outcomes (golden values)."""

import math

import pytest
from saferlhf.runners.evaluate.arena import (
    Game,
    arena,
    bootstrap_elo_interval,
    bradley_terry_elo,
    compare_higher,
    compare_synthetic,
    round_robin,
    win_rates,
)


def test_two_versions_golden_elo_follows_the_prior_smoothed_win_ratio():
    # A wins 3 of 4; with one virtual draw: W_A = 3.5, W_B = 1.5 -> diff = 400 log10(7/3) = 147.19
    games = [Game("A", "B", 1.0)] * 3 + [Game("A", "B", 0.0)]
    elo = bradley_terry_elo(games, ["A", "B"])
    assert elo["A"] == 1000.0
    assert elo["B"] == pytest.approx(1000.0 - 147.1907, abs=1e-3)


def test_the_first_version_is_anchored_at_1000_even_when_it_loses():
    games = [Game("sft", "v1", 0.0)] * 4
    elo = bradley_terry_elo(games, ["sft", "v1"])
    assert elo["sft"] == 1000.0
    assert elo["v1"] == pytest.approx(1000.0 + 400 * math.log10(4.5 / 0.5), abs=1e-6)


def test_a_dominant_version_gets_the_highest_elo_and_order_is_transitive():
    games = [Game("A", "B", 1.0)] * 5 + [Game("B", "C", 1.0)] * 5 + [Game("A", "C", 1.0)] * 5
    elo = bradley_terry_elo(games, ["C", "B", "A"])
    assert elo["A"] > elo["B"] > elo["C"] == 1000.0


def test_symmetric_outcomes_give_equal_elo():
    games = [Game("A", "B", 1.0), Game("A", "B", 0.0), Game("B", "C", 0.5), Game("A", "C", 0.5)]
    elo = bradley_terry_elo(games, ["A", "B", "C"])
    assert elo["A"] == pytest.approx(1000.0)
    assert elo["B"] == pytest.approx(1000.0)
    assert elo["C"] == pytest.approx(1000.0)


def test_three_version_fit_satisfies_the_bradley_terry_score_equations():
    games = ([Game("A", "B", 1.0)] * 3 + [Game("A", "B", 0.0)] * 2 + [Game("B", "C", 1.0)] * 4
             + [Game("A", "C", 0.5)] * 2 + [Game("A", "C", 0.0)])
    versions = ["A", "B", "C"]
    elo = bradley_terry_elo(games, versions)
    p = {v: 10 ** ((elo[v] - 1000.0) / 400) for v in versions}
    # wins incl. half draws and one virtual draw per pair, by hand:
    wins = {"A": 3 + 1 + 0.5 + 0.5, "B": 2 + 4 + 0.5 + 0.5, "C": 0 + 1 + 1 + 0.5 + 0.5}
    played = {("A", "B"): 6, ("B", "C"): 5, ("A", "C"): 4}
    for v in versions:
        expected = sum(
            n * p[v] / (p[v] + p[o]) for (x, y), n in played.items() if v in (x, y)
            for o in [y if x == v else x]
        )
        assert expected == pytest.approx(wins[v], rel=1e-6)


def test_win_rates_count_draws_as_half_and_are_complementary():
    games = [Game("A", "B", 1.0), Game("A", "B", 0.5), Game("A", "B", 0.0), Game("A", "B", 1.0)]
    rates = win_rates(games, ["A", "B"])
    assert rates["A"]["B"] == pytest.approx(2.5 / 4)
    assert rates["B"]["A"] == pytest.approx(1.5 / 4)


def test_round_robin_plays_every_pair_on_every_aligned_item():
    verdicts = {"a": [1.0, 2.0], "b": [2.0, 2.0], "c": [0.0, 3.0]}
    games = round_robin(verdicts, compare_higher)
    assert len(games) == 3 * 2
    assert [g.score_a for g in games if (g.a, g.b) == ("a", "b")] == [0.0, 0.5]
    with pytest.raises(ValueError, match="different numbers"):
        round_robin({"a": [1.0], "b": [1.0, 2.0]}, compare_higher)


def test_synthetic_verdict_prefers_helpfulness_then_harmlessness():
    assert compare_synthetic(0.8, True, 0.5, False) == 1.0
    assert compare_synthetic(0.5, False, 0.5, True) == 1.0
    assert compare_synthetic(0.5, True, 0.5, False) == 0.0
    assert compare_synthetic(0.5, False, 0.5, False) == 0.5


def test_arena_reports_games_win_rates_and_elo():
    result = arena({"sft": [0.0, 0.0, 1.0], "ppo": [1.0, 1.0, 1.0]}, compare_higher)
    assert result["games"] == 3
    assert result["win_rates"]["ppo"]["sft"] == pytest.approx(2.5 / 3)
    assert result["elo"]["ppo"] > result["elo"]["sft"] == 1000.0


def test_bootstrap_interval_brackets_the_fit_and_separates_a_clearly_better_version():
    sft = [0.0] * 30 + [1.0] * 10
    better = [1.0] * 30 + [0.0] * 10
    verdicts = {"sft": sft, "better": better}
    interval = bootstrap_elo_interval(verdicts, compare_higher, resamples=100, seed=3)
    point = arena(verdicts, compare_higher)["elo"]["better"]
    assert interval["sft"] == (1000.0, 1000.0)
    low, high = interval["better"]
    assert 1000.0 < low <= point <= high
    assert bootstrap_elo_interval(verdicts, compare_higher, resamples=100, seed=3) == interval
