"""Head / torso / tail buckets, always defined by the TRAINING split.

``traffic`` (search logs with real frequencies, e.g. Best Buy): rank the distinct training queries by
their training traffic (sum of example weights), ties broken by the query string. Walking down that
ranking, a query is ``head`` while the traffic of the queries ranked above it is below
``head_share`` (50%) of the total, i.e. head = the most frequent queries that carry the first 50% of
traffic, the query that crosses the 50% line included; ``torso`` likewise up to
``head_share + torso_share`` (80%); the rest, and every query never seen in training, is ``tail``.

Proxies, for data without traffic (the name is carried in ``Dataset.bucketing`` and must be reported):

- ``proxy:target-popularity``: items are ranked by how often they are a training target (weighted);
  head items carry the first 50% of training interactions, torso the next 30%, the rest (and items
  never a training target) are tail. An example takes the most popular bucket among its targets.
  Default for the sequence datasets.
- ``proxy:query-length``: short queries are the broad head of a search log, long ones its specific
  tail. Query lengths (words, then characters to break ties) are ranked shortest first by their share
  of training queries and cut at the same 50% / 80% lines; all queries of one length go to the bucket
  its first query falls in (a length is never split, so shares are close to but not exactly 50/30/20).
  Default for Home Depot (works for queries never seen in training).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gr_toolkit.data.types import DataError, Dataset, Examples

BUCKETS = ("head", "torso", "tail")
PROXIES = ("proxy:target-popularity", "proxy:query-length")


def _cut(shares_before: np.ndarray, head_share: float, torso_share: float) -> np.ndarray:
    """Bucket per ranked unit from the traffic share of the units ranked above it."""
    if not (0 < head_share and 0 <= torso_share and head_share + torso_share <= 1):
        raise ValueError(f"need 0 < head_share, 0 <= torso_share, sum <= 1; got {head_share}, {torso_share}")
    eps = 1e-12  # float sums: a share that is exactly 0.5 belongs to the next bucket
    return np.where(shares_before < head_share - eps, "head",
                    np.where(shares_before < head_share + torso_share - eps, "torso", "tail")).astype("<U5")


def query_traffic(examples: Examples) -> pd.Series:
    """Training traffic per distinct query, ranked (most first; ties by query string)."""
    if examples.kind != "query":
        raise DataError("query traffic needs query examples")
    keys = examples.keys if examples.keys is not None else examples.queries
    s = pd.Series(np.asarray(examples.weights, dtype=np.float64), index=pd.Index(keys, name="query"))
    t = s.groupby(level=0, sort=True).sum()
    order = np.lexsort((t.index.to_numpy(dtype=str), -t.to_numpy()))
    return t.iloc[order]


def _ranked_buckets(traffic: pd.Series, head_share: float, torso_share: float) -> pd.Series:
    v = traffic.to_numpy(dtype=np.float64)
    total = v.sum()
    before = (np.cumsum(v) - v) / total if total > 0 else np.zeros_like(v)
    return pd.Series(_cut(before, head_share, torso_share), index=traffic.index)


def _length_key(queries: list[str]) -> np.ndarray:
    """Sort key of a query's length: words first, characters break ties (finer cut points)."""
    return np.array([len(q.split()) * 10_000 + min(len(q), 9_999) for q in queries], dtype=np.int64)


def _item_popularity(dataset: Dataset) -> np.ndarray:
    ex_idx, items = dataset.train.pairs()
    w = np.asarray(dataset.train.weights, dtype=np.float64)[ex_idx]
    return np.bincount(items, weights=w, minlength=len(dataset.catalog))


def assign_buckets(
    dataset: Dataset,
    examples: Examples,
    head_share: float = 0.5,
    torso_share: float = 0.3,
    bucketing: str | None = None,
) -> np.ndarray:
    """``'head' | 'torso' | 'tail'`` per example of ``examples`` (any split of ``dataset``).

    ``bucketing`` overrides ``dataset.bucketing`` (``traffic`` or one of ``PROXIES``).
    """
    scheme = bucketing or dataset.bucketing
    n = len(examples)
    if scheme == "traffic":
        if examples.kind != "query":
            raise DataError("traffic bucketing needs query examples; use proxy:target-popularity for histories")
        ranked = _ranked_buckets(query_traffic(dataset.train), head_share, torso_share)
        keys = examples.keys if examples.keys is not None else examples.queries
        return pd.Series(keys).map(ranked).fillna("tail").to_numpy(dtype="<U5")
    if scheme == "proxy:target-popularity":
        pop = _item_popularity(dataset)
        order = np.lexsort((np.arange(len(pop)), -pop))
        item_bucket = np.full(len(pop), "tail", dtype="<U5")
        ranked = _ranked_buckets(pd.Series(pop[order]), head_share, torso_share).to_numpy()
        item_bucket[order] = np.where(pop[order] > 0, ranked, "tail")
        rank = {"head": 0, "torso": 1, "tail": 2}
        code = np.vectorize(rank.__getitem__, otypes=[np.int64])(item_bucket) if len(pop) else np.zeros(0, np.int64)
        ex_idx, items = examples.pairs()
        best = np.full(n, 2, dtype=np.int64)
        np.minimum.at(best, ex_idx, code[items])
        return np.array(BUCKETS, dtype="<U5")[best]
    if scheme == "proxy:query-length":
        if examples.kind != "query":
            raise DataError("proxy:query-length needs query examples")
        train_len = _length_key(dataset.train.queries)
        w = np.asarray(dataset.train.weights, dtype=np.float64)
        per_len = pd.Series(w).groupby(train_len).sum().sort_index()
        before = (per_len.cumsum() - per_len) / per_len.sum()
        len_bucket = pd.Series(_cut(before.to_numpy(), head_share, torso_share), index=per_len.index)
        ex_len = _length_key(examples.queries)
        # Lengths unseen in training: shorter than all -> head, otherwise the bucket of the next
        # shorter seen length (longer queries are never more "head" than shorter ones).
        seen = per_len.index.to_numpy()
        pos = np.searchsorted(seen, ex_len, side="right") - 1
        out = np.where(pos < 0, "head", len_bucket.to_numpy()[np.maximum(pos, 0)])
        return out.astype("<U5")
    raise DataError(f"unknown bucketing {scheme!r}; use 'traffic' or one of {', '.join(PROXIES)}")


def traffic_table(dataset: Dataset, head_share: float = 0.5, torso_share: float = 0.3) -> pd.DataFrame:
    """Per split and bucket: examples, distinct queries (or users), traffic (summed weights) and its share."""
    rows = []
    for split in ("train", "valid", "test"):
        ex = dataset.split(split)
        b = assign_buckets(dataset, ex, head_share, torso_share) if len(ex) else np.zeros(0, dtype="<U5")
        w = np.asarray(ex.weights, dtype=np.float64)
        keys = np.asarray(ex.keys if ex.keys is not None else np.arange(len(ex)).astype(str), dtype=object)
        total = w.sum()
        for name in BUCKETS:
            m = b == name
            rows.append({
                "split": split,
                "bucket": name,
                "examples": int(m.sum()),
                "queries": int(len(set(keys[m]))),
                "traffic": float(w[m].sum()),
                "share": float(w[m].sum() / total) if total > 0 else float("nan"),
            })
    return pd.DataFrame(rows)
