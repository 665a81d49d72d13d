"""Figures people would rather look at than read (matplotlib, no display needed)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

#: Named lines, each as (xs, ys).
Series = dict[str, tuple[list[float], list[float]]]


def plot_series(path: Path, title: str, xlabel: str, ylabel: str, series: Series,
                references: dict[str, float] | None = None, log_y: bool = False,
                marked: list[tuple[float, float]] | None = None,
                marked_label: str = "") -> None:
    """One line per named (x, y) series, optional horizontal reference lines, and optional
    `marked` points drawn over the lines as large dots (labelled `marked_label`)."""
    figure, axes = plt.subplots(figsize=(9, 5))
    for name, (xs, ys) in series.items():
        axes.plot(xs, ys, label=name, linewidth=1.5, marker="o" if len(xs) < 20 else None)
    if marked:
        axes.scatter(*zip(*marked, strict=True), s=60, color="black", zorder=3,
                     label=marked_label)
    if log_y:
        axes.set_yscale("log")
    for name, value in (references or {}).items():
        axes.axhline(value, linestyle="--", linewidth=0.8, color="grey")
        axes.annotate(name, (0, value), xycoords=("axes fraction", "data"), fontsize=7,
                      color="grey", va="bottom")
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_bars(path: Path, title: str, values: dict[str, float],
              spread: dict[str, tuple[float, float]] | None = None) -> None:
    """Horizontal bars; `spread` (low, high) per bar draws its range over repeated runs."""
    figure, axes = plt.subplots(figsize=(8, 4))
    errors = None
    if spread:
        errors = [[values[k] - spread[k][0] for k in values], [spread[k][1] - values[k]
                                                               for k in values]]
    axes.barh(list(values), list(values.values()), xerr=errors, capsize=4)
    for y, value in enumerate(values.values()):
        axes.annotate(f"{value:,.0f}", (value, y), va="center", fontsize=8)
    axes.set(title=title)
    axes.grid(alpha=0.3, axis="x")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
