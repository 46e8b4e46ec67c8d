"""Per-level diagnostics of semantic-ID codes, and the "sand-glass" (hourglass) test.

Input is a LEVEL-ALIGNED code table ``codes[n_items, L]``: ``codes[i, l]`` is item i's codebook entry at
RQ level ``l`` (``0..codebook_sizes[l]-1``), or ``-1`` where the item carries no token of that level
(pruned). For every level the table reports how items spread over the level's codebook:

- ``entropy`` (bits) of the token-frequency distribution and ``norm_entropy`` = entropy / log2(C);
- ``gini``: Gini coefficient of the per-token item counts over ALL ``C`` codebook entries (unused
  entries count as 0, so an unused codebook is maximal concentration); 0 = perfectly even;
- ``std``: population standard deviation of those counts;
- ``top1_share`` / ``top10_share``: share of the level's items routed by its 1 / 10 most frequent tokens;
- ``used_tokens`` (and ``codebook``);
- ``path_sparsity``: distinct code prefixes of depth l+1 that occur / possible prefixes (prod of C_j);
- at table level: ``collision_rate`` = share of items whose full code is shared with another item
  (before disambiguation), ``max_collision_group``.

Sand-glass rule (``is_sandglass``): some middle level ``m`` (0 < m < L-1) has a Gini coefficient at
least ``margin`` (default 0.10) above BOTH its neighbours' Gini coefficients. The Gini over the full
codebook is used because it captures both a few tokens routing most items and unused codebook entries;
the entropy and top-share columns are reported alongside as evidence.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gr_toolkit.evaluation.results import json_default

SANDGLASS_MARGIN = 0.10


@dataclass
class LevelStats:
    level: int
    codebook: int
    n_items: int  # items carrying a token of this level
    used_tokens: int
    entropy: float
    norm_entropy: float
    gini: float
    std: float
    top1_share: float
    top10_share: float
    used_prefixes: int
    possible_prefixes: float
    path_sparsity: float


@dataclass
class DiagnosticsTable:
    levels: list[LevelStats]
    n_items: int
    collision_rate: float
    n_colliding_items: int
    max_collision_group: int

    def column(self, name: str) -> list[float]:
        return [getattr(s, name) for s in self.levels]

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_items": self.n_items,
            "collision_rate": self.collision_rate,
            "n_colliding_items": self.n_colliding_items,
            "max_collision_group": self.max_collision_group,
            "levels": [asdict(s) for s in self.levels],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DiagnosticsTable:
        return cls(
            levels=[LevelStats(**s) for s in d["levels"]],
            n_items=d["n_items"],
            collision_rate=d["collision_rate"],
            n_colliding_items=d["n_colliding_items"],
            max_collision_group=d["max_collision_group"],
        )

    def markdown(self) -> str:
        head = (
            "| level | codebook | items | used | entropy (bits) | norm. entropy | Gini | std | top-1 share "
            "| top-10 share | used prefixes | path sparsity |\n"
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        )
        rows = "".join(
            f"| {s.level} | {s.codebook} | {s.n_items} | {s.used_tokens} | {s.entropy:.3f} | {s.norm_entropy:.3f} "
            f"| {s.gini:.3f} | {s.std:.1f} | {s.top1_share:.3f} | {s.top10_share:.3f} | {s.used_prefixes} "
            f"| {s.path_sparsity:.3g} |\n"
            for s in self.levels
        )
        tail = (
            f"\nItems: {self.n_items}; collision rate before disambiguation: {self.collision_rate:.4f} "
            f"({self.n_colliding_items} items, largest group {self.max_collision_group}).\n"
        )
        return head + rows + tail


def entropy_bits(counts: np.ndarray) -> float:
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        return 0.0
    p = counts[counts > 0] / total
    return float(-(p * np.log2(p)).sum())


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts: ``sum_i (2i - m - 1) x_(i) / (m * sum x)`` with x ascending."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    m, total = len(x), x.sum()
    if m == 0 or total <= 0:
        return 0.0
    ranks = np.arange(1, m + 1)
    return float(((2 * ranks - m - 1) * x).sum() / (m * total))


def level_counts(codes: np.ndarray, level: int, codebook: int) -> np.ndarray:
    """Items per codebook entry at ``level`` (length ``codebook``; absent entries ignored)."""
    col = codes[:, level]
    col = col[col >= 0]
    if len(col) and col.max() >= codebook:
        raise ValueError(f"level {level}: code {int(col.max())} is outside its codebook of size {codebook}")
    return np.bincount(col, minlength=codebook)


def diagnose(codes: np.ndarray, codebook_sizes: Sequence[int] | int) -> DiagnosticsTable:
    """Per-level statistics of a level-aligned code table (see module docstring)."""
    codes = np.asarray(codes, dtype=np.int64)
    if codes.ndim != 2 or codes.shape[0] == 0:
        raise ValueError(f"codes must be a non-empty [n_items, levels] table, got shape {codes.shape}")
    n, n_levels = codes.shape
    sizes = [int(codebook_sizes)] * n_levels if np.isscalar(codebook_sizes) else [int(c) for c in codebook_sizes]
    if len(sizes) != n_levels:
        raise ValueError(f"{len(sizes)} codebook sizes for {n_levels} levels")
    stats = []
    possible = 1.0
    for lvl in range(n_levels):
        c = sizes[lvl]
        counts = level_counts(codes, lvl, c)
        present = codes[:, lvl] >= 0
        n_here = int(present.sum())
        top = np.sort(counts)[::-1]
        h = entropy_bits(counts)
        possible *= c
        # A prefix "at depth lvl" is the level-aligned row up to lvl (absent entries are a symbol of their own).
        used_prefixes = len(np.unique(codes[present, : lvl + 1], axis=0)) if n_here else 0
        stats.append(
            LevelStats(
                level=lvl,
                codebook=c,
                n_items=n_here,
                used_tokens=int((counts > 0).sum()),
                entropy=h,
                norm_entropy=h / np.log2(c) if c > 1 else 0.0,
                gini=gini(counts),
                std=float(counts.std()),
                top1_share=float(top[:1].sum() / n_here) if n_here else 0.0,
                top10_share=float(top[:10].sum() / n_here) if n_here else 0.0,
                used_prefixes=used_prefixes,
                possible_prefixes=possible,
                path_sparsity=used_prefixes / possible,
            )
        )
    _, group_of, group_size = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    shared = group_size[group_of.reshape(-1)] > 1
    return DiagnosticsTable(
        levels=stats,
        n_items=n,
        collision_rate=float(shared.mean()),
        n_colliding_items=int(shared.sum()),
        max_collision_group=int(group_size.max()),
    )


def middle_levels(n_levels: int) -> list[int]:
    return list(range(1, n_levels - 1))


def sandglass_scores(table: DiagnosticsTable) -> dict[int, float]:
    """For each middle level: its Gini minus the larger Gini of its two neighbours.

    Levels that no item carries (a dropped level) are skipped: neighbours are the nearest present levels.
    """
    g = table.column("gini")
    present = [s.level for s in table.levels if s.n_items > 0]
    return {present[i]: g[present[i]] - max(g[present[i - 1]], g[present[i + 1]]) for i in range(1, len(present) - 1)}


def is_sandglass(table: DiagnosticsTable, margin: float = SANDGLASS_MARGIN) -> bool:
    """True when some middle level is more concentrated (Gini) than both neighbours by ``margin``."""
    return any(s >= margin for s in sandglass_scores(table).values())


def most_concentrated_middle_level(table: DiagnosticsTable) -> int:
    """The middle level with the highest Gini (the default level to drop / prune)."""
    mids = middle_levels(len(table.levels))
    if not mids:
        raise ValueError(
            f"codes with {len(table.levels)} level(s) have no middle level; give the level to prune explicitly"
        )
    g = table.column("gini")
    return max(mids, key=lambda m: g[m])


def verdict(table: DiagnosticsTable, margin: float = SANDGLASS_MARGIN) -> str:
    """A one-line plain statement of whether the sand-glass shape appears, with the numbers behind it."""
    scores = sandglass_scores(table)
    if not scores:
        return "no middle level (fewer than 3 levels carry tokens): the sand-glass test does not apply"
    g = table.column("gini")
    best = max(scores, key=scores.get)
    parts = ", ".join(f"L{i}={v:.3f}" for i, v in enumerate(g))
    yes = scores[best] >= margin
    return (
        f"sand-glass {'PRESENT' if yes else 'ABSENT'}: Gini by level {parts}; level {best} exceeds the larger "
        f"neighbour by {scores[best]:+.3f} (rule: >= {margin:.2f})"
    )


def write_report(
    out_dir: str | Path,
    tables: dict[str, DiagnosticsTable],
    extra: dict[str, Any] | None = None,
    name: str = "rq_diagnostics",
    title: str = "RQ semantic-ID diagnostics",
) -> tuple[Path, Path]:
    """Write ``<name>.json`` and ``<name>.md`` with one table per stage (e.g. "before", "after")."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        **(extra or {}),
        "sandglass_rule": f"a middle level's Gini exceeds both neighbours' by >= {SANDGLASS_MARGIN}",
        "tables": {k: {**t.to_dict(), "is_sandglass": is_sandglass(t), "verdict": verdict(t)} for k, t in tables.items()},
    }
    jpath = out_dir / f"{name}.json"
    jpath.write_text(json.dumps(payload, indent=2, default=json_default) + "\n")
    lines = [f"# {title}\n"]
    for k, v in (extra or {}).items():
        if isinstance(v, (str, int, float, bool)) or v is None:
            lines.append(f"- {k}: `{v}`" if k == "command" else f"- {k}: {v}")
    for k, t in tables.items():
        lines.append(f"\n## {k}\n\n{verdict(t)}\n\n{t.markdown()}")
    mpath = out_dir / f"{name}.md"
    mpath.write_text("\n".join(lines) + "\n")
    return jpath, mpath


def level_aligned_codes(codes: np.ndarray, token_level: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Any ``CodeIndex``'s token codes as a level-aligned table (token rank within its level, -1 absent).

    Works for per-level codebooks (``token_level`` = RQ level) and trees (``token_level`` = depth: every
    node is an "entry" of its depth), so the same diagnostics compare RQ codes with a SEATER tree.
    """
    codes = np.asarray(codes, dtype=np.int64)
    token_level = np.asarray(token_level, dtype=np.int64)
    n_levels = int(token_level.max()) + 1 if len(token_level) else 0
    sizes = np.bincount(token_level, minlength=n_levels)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    order = np.argsort(token_level, kind="stable")
    rank = np.empty(len(token_level), dtype=np.int64)
    rank[order] = np.arange(len(token_level)) - starts[token_level[order]]
    rows, cols = np.nonzero(codes >= 0)
    toks = codes[rows, cols]
    lv = token_level[toks]
    if len(np.unique(rows * max(n_levels, 1) + lv)) != len(rows):
        raise ValueError("an identifier carries two tokens of the same level; it has no level-aligned form")
    out = np.full((codes.shape[0], n_levels), -1, dtype=np.int64)
    out[rows, lv] = rank[toks]
    return out, [int(s) for s in sizes]


def diagnose_index(index) -> DiagnosticsTable:
    """Per-level diagnostics of any ``CodeIndex`` (levels from its ``token_level``)."""
    return diagnose(*level_aligned_codes(index.codes, index.token_level))
