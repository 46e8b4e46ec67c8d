"""Sand-glass pruning of RQ semantic IDs: drop a level, or adaptively strip a middle level's top tokens.

Both work on level-aligned codes ``[n, L]`` and return a ``keep[n, L]`` mask plus a ``PruneDecision``
that records what was done and why; ``gr_toolkit.identifiers.rq_tokens.assemble`` then turns the kept
tokens into unique identifiers (re-disambiguating items whose shorter codes now collide).

- ``drop-level``: remove level ``m`` from every identifier (default ``m``: the middle level with the
  highest Gini, ``sandglass.most_concentrated_middle_level``). Codes stay fixed length, L-1 (+1).
- ``adaptive``: the items that carry one of the ``K`` most frequent tokens of middle level ``m`` lose
  that token; all others keep it. Identifiers become VARIABLE-LENGTH (decoded with an EOS token).
  Rule for ``K`` when not given: let ``target`` = the larger Gini of the two neighbouring levels (or
  ``target_gini`` when given); ``K`` is the smallest value in ``0..max_k`` such that the Gini of the
  middle level's remaining counts (its codebook minus the ``K`` removed entries) is <= ``target``, i.e.
  the middle level is no longer more concentrated than its neighbours; if no ``K <= max_k`` reaches it,
  ``K = max_k``. ``max_k`` defaults to a quarter of the middle codebook so that at most 25% of the
  routing vocabulary is stripped. ``K = 0`` (no pruning) when the middle level is already no more
  concentrated than its neighbours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from gr_toolkit.identifiers.sandglass import (
    DiagnosticsTable,
    diagnose,
    gini,
    level_counts,
    most_concentrated_middle_level,
)

PRUNE_MODES = ("none", "drop-level", "adaptive")


@dataclass
class PruneDecision:
    mode: str
    level: int | None = None
    top_k: int | None = None
    removed_tokens: list[int] = field(default_factory=list)  # codebook entries of ``level`` stripped (adaptive)
    items_pruned: int = 0  # items that lost a token
    target_gini: float | None = None
    remaining_gini: float | None = None
    rule: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_level(level: int, n_levels: int) -> int:
    if not 0 <= level < n_levels:
        raise ValueError(f"prune level {level} is outside 0..{n_levels - 1}")
    return int(level)


def drop_level_mask(level_codes: np.ndarray, level: int) -> np.ndarray:
    n_levels = level_codes.shape[1]
    if n_levels < 2:
        raise ValueError("dropping a level needs codes with at least 2 levels")
    keep = np.ones(level_codes.shape, dtype=bool)
    keep[:, _check_level(level, n_levels)] = False
    return keep


def top_tokens(level_codes: np.ndarray, level: int, codebook: int, k: int) -> np.ndarray:
    """The ``k`` most frequent entries of ``level`` (ties: lower entry id first)."""
    counts = level_counts(level_codes, level, codebook)
    order = np.lexsort((np.arange(codebook), -counts))
    return np.sort(order[:k])


def adaptive_mask(level_codes: np.ndarray, level: int, removed: np.ndarray) -> np.ndarray:
    keep = np.ones(level_codes.shape, dtype=bool)
    keep[:, _check_level(level, level_codes.shape[1])] = ~np.isin(level_codes[:, level], removed)
    return keep


def remaining_gini_curve(counts: np.ndarray, max_k: int) -> np.ndarray:
    """Gini of the counts left after removing the top-K entries, for K = 0..max_k."""
    s = np.sort(np.asarray(counts))[::-1]
    return np.array([gini(s[k:]) for k in range(max_k + 1)])


def choose_adaptive_k(counts: np.ndarray, target_gini: float, max_k: int) -> tuple[int, float]:
    """Smallest K <= max_k whose remaining Gini is <= target (else max_k); returns (K, remaining Gini)."""
    max_k = int(min(max_k, len(counts) - 1))
    curve = remaining_gini_curve(counts, max_k)
    ok = np.flatnonzero(curve <= target_gini)
    k = int(ok[0]) if len(ok) else max_k
    return k, float(curve[k])


def plan_pruning(
    level_codes: np.ndarray,
    codebook_sizes: Sequence[int],
    mode: str,
    level: int | None = None,
    top_k: int | None = None,
    target_gini: float | None = None,
    max_k: int | None = None,
    table: DiagnosticsTable | None = None,
) -> tuple[np.ndarray, PruneDecision]:
    """The keep mask for ``mode`` and the decision behind it (see module docstring for the rules)."""
    level_codes = np.asarray(level_codes, dtype=np.int64)
    if mode not in PRUNE_MODES:
        raise ValueError(f"prune must be one of {', '.join(PRUNE_MODES)}; got {mode!r}")
    if mode == "none":
        return np.ones(level_codes.shape, dtype=bool), PruneDecision(mode="none", rule="no pruning")
    table = table if table is not None else diagnose(level_codes, codebook_sizes)
    chosen_by_rule = level is None
    level = most_concentrated_middle_level(table) if level is None else _check_level(level, level_codes.shape[1])
    why_level = "most concentrated middle level (highest Gini)" if chosen_by_rule else "given"
    if mode == "drop-level":
        keep = drop_level_mask(level_codes, level)
        return keep, PruneDecision(
            mode=mode, level=level, items_pruned=len(level_codes), rule=f"drop level {level} ({why_level})"
        )

    n_levels = level_codes.shape[1]
    if not 0 < level < n_levels - 1 and target_gini is None and top_k is None:
        raise ValueError(f"adaptive pruning of edge level {level} needs top_k or target_gini (no two neighbours)")
    codebook = int(codebook_sizes[level])
    counts = level_counts(level_codes, level, codebook)
    g = table.column("gini")
    if top_k is None:
        target = float(max(g[level - 1], g[level + 1])) if target_gini is None else float(target_gini)
        cap = max(1, codebook // 4) if max_k is None else int(max_k)
        top_k, remaining = choose_adaptive_k(counts, target, cap)
        rule = (
            f"level {level} ({why_level}); K = smallest K <= {cap} with remaining Gini <= {target:.3f} "
            f"({'larger neighbour Gini' if target_gini is None else 'given target'})"
        )
    else:
        if not 0 <= top_k < codebook:
            raise ValueError(f"adaptive_top_k must be in 0..{codebook - 1} for a codebook of {codebook}; got {top_k}")
        target = target_gini
        remaining = float(remaining_gini_curve(counts, top_k)[-1])
        rule = f"level {level} ({why_level}); K = {top_k} given"
    removed = top_tokens(level_codes, level, codebook, top_k)
    keep = adaptive_mask(level_codes, level, removed)
    return keep, PruneDecision(
        mode=mode,
        level=level,
        top_k=int(top_k),
        removed_tokens=[int(t) for t in removed],
        items_pruned=int((~keep).any(axis=1).sum()),
        target_gini=target,
        remaining_gini=remaining,
        rule=rule,
    )


def pruned_level_codes(
    level_codes: np.ndarray, keep: np.ndarray, codebook_sizes: Sequence[int], decision: PruneDecision
) -> tuple[np.ndarray, list[int]]:
    """Level-aligned codes after pruning (pruned entries -1) and the codebook sizes they live in.

    For adaptive pruning the K stripped entries leave the middle level's codebook (renumbered so the
    'after' Gini is over the C-K entries that can still occur, as in the K rule); a dropped level keeps
    its codebook size and has no items.
    """
    codes = np.where(keep, level_codes, -1)
    sizes = [int(c) for c in codebook_sizes]
    if decision.mode == "adaptive" and decision.removed_tokens:
        lvl, c = int(decision.level), sizes[int(decision.level)]
        remain = np.ones(c, dtype=bool)
        remain[decision.removed_tokens] = False
        new_id = np.cumsum(remain) - 1
        col = codes[:, lvl]
        codes[:, lvl] = np.where(col >= 0, new_id[np.maximum(col, 0)], -1)
        sizes[lvl] = int(remain.sum())
    return codes, sizes
