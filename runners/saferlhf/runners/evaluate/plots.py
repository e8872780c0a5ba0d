"""PNG figures of the evaluation: reward and cost distributions per model version (Agg backend).

One figure per score (reward, cost): a histogram per version on shared bins, so versions are
comparable at a glance; the cost figure marks the harmful threshold 0 (cost > 0 = harmful).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path


def distribution_plot(
    scores: Mapping[str, Sequence[float]], *, title: str, xlabel: str, path: str | Path,
    threshold: float | None = None,
) -> Path | None:
    """Overlaid histograms of `scores[version]`; None (no file) when there is nothing to plot."""
    values = [v for vs in scores.values() for v in vs]
    if not values:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    low, high = min(values), max(values)
    if low == high:
        low, high = low - 0.5, high + 0.5
    bins = [float(b) for b in np.linspace(low, high, 31)]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for version, vs in scores.items():
        if vs:
            ax.hist(list(vs), bins=bins, alpha=0.5, label=f"{version} (mean {np.mean(vs):.2f})")
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1,
                   label=f"harmful if > {threshold:g}")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("responses")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
