"""Ranking metrics for multi-target examples, overall and per bucket.

For ranked list r (internal item ids, -1 = empty slot) and target set T:
- ``recall@K`` = |top-K ∩ T| / |T|
- ``hr@K``     = 1 if top-K ∩ T is non-empty
- ``ndcg@K``   = DCG@K / IDCG@K with binary gains, DCG = sum 1/log2(rank+1) over hits in top-K,
  IDCG over min(|T|, K) hits
- ``mrr``      = 1 / rank of the first hit in the full list (0 if none)
All are computed for a whole batch with array operations.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_KS = (1, 5, 10, 20, 50, 100)


def hit_matrix(ranked: np.ndarray, targets: Sequence[np.ndarray]) -> np.ndarray:
    """``hits[i, j]`` is True where ``ranked[i, j]`` is a target of example i (duplicates count once)."""
    ranked = np.asarray(ranked, dtype=np.int64)
    n, width = ranked.shape
    if len(targets) != n:
        raise ValueError(f"{n} ranked lists for {len(targets)} target sets")
    lens = np.array([len(t) for t in targets], dtype=np.int64)
    if (lens == 0).any():
        raise ValueError(f"example {int(np.argmax(lens == 0))} has no targets; metrics need at least one")
    flat_t = np.concatenate([np.asarray(t, dtype=np.int64) for t in targets])
    owner = np.repeat(np.arange(n), lens)
    # Encode (example, item) pairs as one int64 so membership is a single np.isin.
    span = int(max(ranked.max(initial=0), flat_t.max(initial=0))) + 2
    pair_t = np.unique(owner * span + flat_t)
    pair_r = np.arange(n)[:, None] * span + ranked
    hits = np.isin(pair_r, pair_t) & (ranked >= 0)
    # A repeated item in a ranked list may only count once: keep its first occurrence.
    if width > 1:
        order = np.argsort(ranked, axis=1, kind="stable")
        s = np.take_along_axis(ranked, order, axis=1)
        dup_sorted = np.zeros_like(s, dtype=bool)
        dup_sorted[:, 1:] = s[:, 1:] == s[:, :-1]
        dup = np.zeros_like(dup_sorted)
        np.put_along_axis(dup, order, dup_sorted, axis=1)
        hits &= ~dup
    return hits


def metrics_from_hits(hits: np.ndarray, n_targets: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[str, np.ndarray]:
    """Per-example metric values (arrays of length n) from a hit matrix."""
    n, width = hits.shape
    n_targets = np.asarray(n_targets, dtype=np.float64)
    discounts = 1.0 / np.log2(np.arange(2, width + 2))
    cum_hits = np.cumsum(hits, axis=1)
    cum_dcg = np.cumsum(hits * discounts, axis=1)
    cum_disc = np.cumsum(1.0 / np.log2(np.arange(2, max(ks) + 2)))
    out: dict[str, np.ndarray] = {}
    for k in ks:
        kk = min(k, width)
        got = cum_hits[:, kk - 1] if kk > 0 else np.zeros(n)
        out[f"recall@{k}"] = got / n_targets
        out[f"hr@{k}"] = (got > 0).astype(np.float64)
        ideal = cum_disc[np.minimum(n_targets, k).astype(np.int64) - 1]
        out[f"ndcg@{k}"] = (cum_dcg[:, kk - 1] if kk > 0 else np.zeros(n)) / ideal
    first = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0)
    out["mrr"] = np.where(first > 0, 1.0 / np.maximum(first, 1), 0.0)
    return out


def recall_at_k(ranked: np.ndarray, targets: Sequence[np.ndarray], k: int) -> float:
    hits = hit_matrix(ranked, targets)
    return float(metrics_from_hits(hits, np.array([len(t) for t in targets]), [k])[f"recall@{k}"].mean())


def evaluate_rankings(
    ranked: np.ndarray,
    targets: Sequence[np.ndarray],
    ks: Sequence[int] = DEFAULT_KS,
    buckets: np.ndarray | None = None,
    bucket_names: Sequence[str] = ("head", "torso", "tail"),
) -> dict[str, dict[str, float]]:
    """Mean metrics overall (``"all"``) and per bucket; each group also reports its ``n`` examples."""
    ks = sorted(set(int(k) for k in ks))
    if not ks or ks[0] < 1:
        raise ValueError(f"cut-offs must be positive integers, got {ks}")
    hits = hit_matrix(ranked, targets)
    per = metrics_from_hits(hits, np.array([len(t) for t in targets]), ks)
    groups = {"all": np.ones(len(targets), dtype=bool)}
    if buckets is not None:
        buckets = np.asarray(buckets)
        for b in bucket_names:
            groups[b] = buckets == b
    report: dict[str, dict[str, float]] = {}
    for g, m in groups.items():
        cnt = int(m.sum())
        report[g] = {"n": cnt, **{name: (float(v[m].mean()) if cnt else float("nan")) for name, v in per.items()}}
    return report


def unseen_target_recall(
    ranked: np.ndarray, targets: Sequence[np.ndarray], train_targets: Sequence[np.ndarray], n_items: int, k: int = 10
) -> dict[str, float]:
    """Of all (example, relevant item) pairs whose item is NEVER a training target, the share found in the
    top ``k``: how well a method reaches items no training query taught it. Also their count and share of
    all pairs (``n_pairs``, ``share_of_pairs``)."""
    seen = np.zeros(int(n_items), dtype=bool)
    if len(train_targets):
        seen[np.concatenate([np.asarray(t, dtype=np.int64) for t in train_targets])] = True
    if len(targets) != len(ranked):
        raise ValueError(f"{len(ranked)} ranked lists for {len(targets)} target sets")
    lens = np.array([len(t) for t in targets], dtype=np.int64)
    flat = np.concatenate([np.asarray(t, dtype=np.int64) for t in targets]) if len(targets) else np.zeros(0, np.int64)
    owner = np.repeat(np.arange(len(targets)), lens)
    unseen = ~seen[flat]
    top = np.asarray(ranked[:, :k], dtype=np.int64)
    found = (top[owner] == flat[:, None]).any(1)  # the pair's item is in its example's top k
    n_unseen = int(unseen.sum())
    return {f"recall@{k}": float(found[unseen].mean()) if n_unseen else float("nan"), "n_pairs": n_unseen,
            "share_of_pairs": float(unseen.mean()) if len(flat) else float("nan")}
