"""Rank-frequency plots of per-level token usage (one panel per level, one line per stage), as a PNG.

Sorted counts (rank on x, share of the level's items on a log y-axis) make the sand-glass visible at a glance: a concentrated level drops
steeply after its first few ranks, an even one stays flat.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gr_toolkit.evaluation.plots import headless_pyplot, save_figure


def plot_rank_frequency(stages: dict[str, list[np.ndarray]], path: str | Path, title: str = "") -> Path:
    """``stages[label][level]`` = items per codebook entry. Writes one PNG with a panel per level."""
    plt = headless_pyplot()
    if not stages:
        raise ValueError("nothing to plot: no stages")
    n_levels = max(len(v) for v in stages.values())
    fig, axes = plt.subplots(1, n_levels, figsize=(4.2 * n_levels, 3.6), squeeze=False)
    for lvl in range(n_levels):
        ax = axes[0, lvl]
        first: np.ndarray | None = None
        for s_i, (label, per_level) in enumerate(stages.items()):
            if lvl >= len(per_level):
                continue
            counts = np.sort(np.asarray(per_level[lvl]))[::-1]
            counts = counts[counts > 0]
            if len(counts) == 0:
                ax.plot([], [], label=f"{label}: level removed")
                continue
            same = first is not None and np.array_equal(first, counts)
            first = counts if first is None else first
            share = counts / counts.sum()
            # Later stages dashed/dotted and thinner, so an unchanged level still shows both lines.
            ax.plot(np.arange(1, len(counts) + 1), share, linestyle=("-", "--", ":", "-.")[s_i % 4],
                    linewidth=2.4 if s_i == 0 else 1.4, marker="." if len(counts) <= 40 else None,
                    label=f"{label} ({len(counts)} used{', unchanged' if same else ''})")
        ax.set_yscale("log")
        ax.set_xlabel("token rank")
        ax.set_ylabel("share of the level's items")
        ax.set_title(f"level {lvl}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)
