"""Fusing ranked runs (e.g. BM25 + DSSM): reciprocal-rank fusion and normalised score fusion.

A run is a pair ``(items [n, K_r], scores [n, K_r])`` of internal item ids (``-1`` = empty slot) for
the same n sources. Fusion is vectorised: every (row, item) contribution of every run is keyed as one
int64, summed with ``np.bincount``, and each row's best ``k`` fused items are picked with one lexsort.

- RRF (Cormack et al., 2009): ``sum_r w_r / (c + rank_r(d))`` with 1-based ranks, c = 60.
- Score fusion (CombSUM): ``sum_r w_r * norm_r(score)`` with per-row ``minmax`` or ``zscore``
  normalisation; an item absent from a run contributes nothing from it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Run = tuple[np.ndarray, np.ndarray]


def _check(runs: Sequence[Run], weights: Sequence[float] | None) -> list[float]:
    if not runs:
        raise ValueError("fusion needs at least one run")
    n = runs[0][0].shape[0]
    for i, (items, scores) in enumerate(runs):
        if items.ndim != 2 or items.shape != scores.shape:
            raise ValueError(f"run {i}: items {items.shape} and scores {scores.shape} must be equal 2-d shapes")
        if items.shape[0] != n:
            raise ValueError(f"run {i} has {items.shape[0]} rows, run 0 has {n}")
    w = [1.0] * len(runs) if weights is None else [float(x) for x in weights]
    if len(w) != len(runs):
        raise ValueError(f"{len(w)} weights for {len(runs)} runs")
    return w


def _fuse(runs: Sequence[Run], contrib: list[np.ndarray], k: int) -> Run:
    n = runs[0][0].shape[0]
    rows = np.concatenate([np.repeat(np.arange(n), r[0].shape[1]) for r in runs])
    items = np.concatenate([r[0].reshape(-1) for r in runs])
    vals = np.concatenate([c.reshape(-1) for c in contrib]).astype(np.float64)
    ok = items >= 0
    rows, items, vals = rows[ok], items[ok], vals[ok]
    # A repeated item within one run row counts once: only the best (first) slot is kept per run by
    # the caller's ranking, so here duplicates simply add up across runs.
    span = int(items.max(initial=0)) + 1
    keys, inv = np.unique(rows * span + items, return_inverse=True)
    total = np.bincount(inv, weights=vals)
    krow, kitem = keys // span, keys % span
    order = np.lexsort((kitem, -total, krow))  # per row: best fused score first, ties by item id
    krow, kitem, total = krow[order], kitem[order], total[order]
    starts = np.searchsorted(krow, np.arange(n))
    pos = np.arange(len(krow)) - starts[krow]
    keep = pos < k
    out_i = np.full((n, k), -1, dtype=np.int64)
    out_s = np.full((n, k), -np.inf, dtype=np.float64)
    out_i[krow[keep], pos[keep]] = kitem[keep]
    out_s[krow[keep], pos[keep]] = total[keep]
    return out_i, out_s


def rrf(runs: Sequence[Run], k: int = 100, c: float = 60.0, weights: Sequence[float] | None = None) -> Run:
    """Reciprocal-rank fusion of ``runs`` into the top-``k`` per row."""
    w = _check(runs, weights)
    contrib = []
    for wi, (items, _) in zip(w, runs, strict=True):
        ranks = np.arange(1, items.shape[1] + 1, dtype=np.float64)
        contrib.append(np.broadcast_to(wi / (c + ranks), items.shape))
    return _fuse(runs, contrib, k)


def normalize_scores(items: np.ndarray, scores: np.ndarray, method: str = "minmax") -> np.ndarray:
    """Per-row normalisation over the row's filled slots (empty slots become 0)."""
    s = np.asarray(scores, np.float64)
    valid = (items >= 0) & np.isfinite(s)
    cnt = valid.sum(1, keepdims=True)
    masked = np.where(valid, s, np.nan)
    with np.errstate(all="ignore"):
        if method == "minmax":
            lo = np.nanmin(np.where(cnt > 0, masked, 0.0), axis=1, keepdims=True)
            hi = np.nanmax(np.where(cnt > 0, masked, 0.0), axis=1, keepdims=True)
            rng = hi - lo
            out = np.where(rng > 0, (s - lo) / np.where(rng > 0, rng, 1.0), 1.0)
        elif method == "zscore":
            mu = np.nanmean(np.where(cnt > 0, masked, 0.0), axis=1, keepdims=True)
            sd = np.nanstd(np.where(cnt > 0, masked, 0.0), axis=1, keepdims=True)
            out = np.where(sd > 0, (s - mu) / np.where(sd > 0, sd, 1.0), 0.0)
        else:
            raise ValueError(f"unknown normalisation {method!r}; use minmax or zscore")
    return np.where(valid, out, 0.0)


def score_fusion(runs: Sequence[Run], k: int = 100, norm: str = "minmax", weights: Sequence[float] | None = None) -> Run:
    """CombSUM of per-row normalised scores into the top-``k`` per row."""
    w = _check(runs, weights)
    contrib = [wi * normalize_scores(items, scores, norm) for wi, (items, scores) in zip(w, runs, strict=True)]
    return _fuse(runs, contrib, k)
