"""Plain-text tables and number formatting shared by the CLI's views."""

from __future__ import annotations


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in [header, *rows]]
    return "\n".join(lines)


def fmt_value(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if abs(value) < 1000 else f"{value:.4g}"


def fmt_delta(value: float | None) -> str:
    """A signed change (`+0.046`, `-0.300`); `-` when there is none."""
    return "-" if value is None else f"{value:+.3f}"
