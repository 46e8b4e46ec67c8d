"""Bar charts of result records by query bucket (the picture next to every results table)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

BUCKETS = ("all", "head", "torso", "tail")


def headless_pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend: plots are written to files, never shown, so no display
    is needed (imported lazily: matplotlib is only needed when a plot is drawn)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path) -> Path:
    """Lay out ``fig``, write it as PNG at ``path`` (creating parent folders) and free it."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    headless_pyplot().close(fig)
    return path


def bucket_bar_chart(records: list[dict[str, Any]], metric: str, path: Path, title: str | None = None) -> Path:
    """One group of bars per method, one bar per bucket present in any record; written as PNG at ``path``.

    A bucket a method has no number for is drawn as a gap (NaN), not as zero.
    """
    if not records:
        raise ValueError(f"bucket_bar_chart: no result records to plot for {path}")
    plt = headless_pyplot()
    buckets = [b for b in BUCKETS if any(b in r["metrics"] for r in records)]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(records) + 2), 4))
    width = 0.8 / len(buckets)
    x = np.arange(len(records))
    for j, b in enumerate(buckets):
        vals = [r["metrics"].get(b, {}).get(metric, np.nan) for r in records]
        ax.bar(x + j * width - 0.4 + width / 2, vals, width, label=b)
    ax.set_xticks(x)
    ax.set_xticklabels([r["method"] for r in records], rotation=20, ha="right")
    ax.set_ylabel(metric)
    if title is None:
        r0 = records[0]
        title = f"{r0.get('dataset', '')}: {metric} by bucket ({r0.get('bucketing', '')}), {r0.get('split', 'test')} split"
    ax.set_title(title)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
