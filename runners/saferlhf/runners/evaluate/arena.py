"""The arena: pairwise win rates and Elo ratings of model versions (reference §8.1, §8.5).

Every version answers the same prompts; for each prompt (and sample index) every pair of versions
plays one game, judged by a per-response verdict:
- reward model: the higher reward wins (reference §8.1 "blue better ⇔ reward_blue > reward_red";
  we score an exact tie as a draw, not a loss);
- cost model (harmlessness): the lower cost wins;
- synthetic exact judge: the higher helpfulness wins; at equal helpfulness the harmless response
  beats the harmful one; equal on both is a draw.

Elo: a Bradley–Terry maximum-likelihood fit, P(i beats j) = p_i / (p_i + p_j), with a draw counted
as half a win for each side, and one virtual drawn game per pair (a weak prior that keeps the MLE
finite when one version wins every game). Fitted by Hunter's (2004) MM iteration
    p_i ← W_i / Σ_{j≠i} n_ij / (p_i + p_j)
(W_i = wins of i incl. half draws and the prior, n_ij = games between i and j incl. the prior).
Rating R_i = A + 400·log10(p_i / p_anchor): the first version (the SFT model) is anchored at
A = 1000, as in the paper's and third-party Elo charts (reference §12).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

ELO_SCALE = 400.0
ANCHOR_RATING = 1000.0
PRIOR_DRAWS = 1.0


@dataclass(frozen=True)
class Game:
    """One comparison: `score_a` = 1 (a wins), 0.5 (draw) or 0 (b wins)."""

    a: str
    b: str
    score_a: float


def compare_higher(x: float, y: float) -> float:
    """1 if x > y, 0.5 if equal, 0 if x < y."""
    return 1.0 if x > y else 0.5 if x == y else 0.0


def compare_synthetic(help_a: float, harmful_a: bool, help_b: float, harmful_b: bool) -> float:
    """Exact-judge verdict: higher helpfulness wins; harm breaks a helpfulness tie."""
    if help_a != help_b:
        return compare_higher(help_a, help_b)
    return compare_higher(float(not harmful_a), float(not harmful_b))


def round_robin(
    verdicts: Mapping[str, Sequence[object]], compare: object
) -> list[Game]:
    """Games between every pair of versions on every aligned item.

    `verdicts[v][k]` is version v's verdict on item k (all versions must have the same number of
    items); `compare(x, y)` returns the score of x against y.
    """
    versions = list(verdicts)
    sizes = {len(verdicts[v]) for v in versions}
    if len(sizes) > 1:
        raise ValueError(f"versions answered different numbers of items: {sizes}")
    games = []
    for a, b in itertools.combinations(versions, 2):
        for x, y in zip(verdicts[a], verdicts[b], strict=True):
            games.append(Game(a, b, float(compare(x, y))))  # type: ignore[operator]
    return games


def _tallies(games: Sequence[Game], versions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(wins, games) matrices: wins[i, j] = score of i against j (draws count ½)."""
    index = {v: i for i, v in enumerate(versions)}
    n = len(versions)
    wins = np.zeros((n, n))  # (V, V)
    played = np.zeros((n, n))  # (V, V), symmetric
    for g in games:
        i, j = index[g.a], index[g.b]
        wins[i, j] += g.score_a
        wins[j, i] += 1.0 - g.score_a
        played[i, j] += 1.0
        played[j, i] += 1.0
    return wins, played


def win_rates(games: Sequence[Game], versions: Sequence[str]) -> dict[str, dict[str, float]]:
    """rates[a][b] = (wins of a over b + ½ draws) / games between them (no prior)."""
    wins, played = _tallies(games, versions)
    return {
        a: {b: float(wins[i, j] / played[i, j]) for j, b in enumerate(versions)
            if i != j and played[i, j] > 0}
        for i, a in enumerate(versions)
    }


def bradley_terry_elo(
    games: Sequence[Game],
    versions: Sequence[str],
    *,
    anchor_rating: float = ANCHOR_RATING,
    prior_draws: float = PRIOR_DRAWS,
    max_iter: int = 10_000,
    tol: float = 1e-10,
) -> dict[str, float]:
    """Elo ratings from a Bradley–Terry MLE (module docstring); versions[0] is the anchor."""
    if not versions:
        return {}
    wins, played = _tallies(games, versions)
    return _fit_elo(wins, played, versions, anchor_rating=anchor_rating,
                    prior_draws=prior_draws, max_iter=max_iter, tol=tol)


def _fit_elo(
    wins: np.ndarray,  # (V, V) wins[i, j] incl. half draws
    played: np.ndarray,  # (V, V) games between i and j
    versions: Sequence[str],
    *,
    anchor_rating: float = ANCHOR_RATING,
    prior_draws: float = PRIOR_DRAWS,
    max_iter: int = 10_000,
    tol: float = 1e-10,
) -> dict[str, float]:
    """The MM fit of the module docstring on tallies."""
    n = len(versions)
    off_diag = 1.0 - np.eye(n)
    wins = wins + 0.5 * prior_draws * off_diag  # one virtual draw per pair: ½ win each way
    played = played + prior_draws * off_diag
    total_wins = wins.sum(axis=1)  # (V,)
    strength = np.ones(n)  # (V,) p_i
    for _ in range(max_iter):
        denom = (played / (strength[:, None] + strength[None, :])).sum(axis=1)  # (V,)
        new = total_wins / denom
        new = new / math.exp(np.log(new).mean())  # fix the scale (geometric mean 1)
        done = np.max(np.abs(np.log(new) - np.log(strength))) < tol
        strength = new
        if done:
            break
    log_ratio = np.log10(strength / strength[0])
    return {v: float(anchor_rating + ELO_SCALE * log_ratio[i]) for i, v in enumerate(versions)}


def bootstrap_elo_interval(
    verdicts: Mapping[str, Sequence[object]], compare: object, *, resamples: int = 200,
    seed: int = 0, level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval of each version's Elo, resampling the items (prompts ×
    samples) with replacement; the anchor's interval is (1000, 1000) by construction."""
    versions = list(verdicts)
    n_items = len(verdicts[versions[0]]) if versions else 0
    if n_items == 0:
        return {}
    # per-item game scores, computed once: (pairs, items)
    pairs = list(itertools.combinations(range(len(versions)), 2))
    scores = np.array([[float(compare(x, y))  # type: ignore[operator]
                        for x, y in zip(verdicts[versions[i]], verdicts[versions[j]],
                                        strict=True)] for i, j in pairs])
    rng = np.random.default_rng(seed)
    ratings = np.zeros((resamples, len(versions)))
    played = np.full((len(versions), len(versions)), float(n_items)) * (1.0 - np.eye(len(versions)))
    for b in range(resamples):
        counts = np.bincount(rng.integers(0, n_items, size=n_items), minlength=n_items)  # (items,)
        won = scores @ counts  # (pairs,) score of i against j on the resampled items
        wins = np.zeros_like(played)
        for (i, j), w in zip(pairs, won, strict=True):
            wins[i, j], wins[j, i] = w, n_items - w
        elo = _fit_elo(wins, played, versions)
        ratings[b] = [elo[v] for v in versions]
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(ratings, [tail, 100 - tail], axis=0)
    return {v: (float(low[k]), float(high[k])) for k, v in enumerate(versions)}


def arena(verdicts: Mapping[str, Sequence[object]], compare: object, *,
          bootstrap_resamples: int = 0, seed: int = 0) -> dict:
    """Win rates and Elo for one judge: {"games", "win_rates", "elo"} (+ "elo_ci95" when
    `bootstrap_resamples` > 0)."""
    versions = list(verdicts)
    games = round_robin(verdicts, compare)
    out: dict = {
        "games": len(games),
        "win_rates": win_rates(games, versions),
        "elo": bradley_terry_elo(games, versions),
    }
    if bootstrap_resamples > 0:
        out["elo_ci95"] = bootstrap_elo_interval(verdicts, compare,
                                                 resamples=bootstrap_resamples, seed=seed)
    return out


def position_swapped_score(first: Mapping[str, int] | None, second: Mapping[str, int] | None
                           ) -> float | None:
    """Version x's score against y from a pairwise judge asked twice: `first` with x as answer A,
    `second` with x as answer B (scores {"a", "b"}). The mean of the two verdicts, so a judge that
    only prefers a position scores a draw; None when either judgement is unparseable."""
    if first is None or second is None:
        return None
    return (compare_higher(first["a"], first["b"]) + compare_higher(second["b"], second["a"])) / 2


def games_arena(games_by_item: Mapping[object, Sequence[Game]], versions: Sequence[str], *,
                bootstrap_resamples: int = 0, seed: int = 0, level: float = 0.95) -> dict:
    """Win rates and Elo from games judged directly (a pairwise judge), with the same bootstrap
    as `arena` (resampling items; every item's games go together)."""
    items = list(games_by_item)
    games = [g for item in items for g in games_by_item[item]]
    out: dict = {"games": len(games), "win_rates": win_rates(games, versions),
                 "elo": bradley_terry_elo(games, versions)}
    if bootstrap_resamples > 0 and items:
        rng = np.random.default_rng(seed)
        ratings = np.zeros((bootstrap_resamples, len(versions)))
        for b in range(bootstrap_resamples):
            picked = rng.integers(0, len(items), size=len(items))
            sample = [g for i in picked for g in games_by_item[items[i]]]
            elo = bradley_terry_elo(sample, versions)
            ratings[b] = [elo[v] for v in versions]
        tail = (1.0 - level) / 2 * 100
        low, high = np.percentile(ratings, [tail, 100 - tail], axis=0)
        out["elo_ci95"] = {v: (float(low[k]), float(high[k])) for k, v in enumerate(versions)}
    return out
