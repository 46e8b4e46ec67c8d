"""Home Depot Product Search Relevance (Kaggle 2016): human-judged (query, product) pairs.

- ``homedepot/train.csv`` is latin-1 and decoded explicitly.
- Catalog: every ``product_uid`` in the file, field ``title``. A uid listed with different titles
  keeps its first title (counted in notes).
- Queries are keyed by their normalised text (lower-case, single spaces), so "Angle Bracket" and
  "angle bracket" are one query and never straddle splits.
- A query's targets are the products with mean relevance >= ``positive_threshold`` (2.67), their
  relevance kept in ``target_grades``; products with relevance < ``negative_threshold`` (2.0) are its
  ``negatives`` (judged non-relevant, for preference pairs); the ones in between are neither.
  The same (query, product) judged twice is averaged (counted in notes).
- Split: seeded query-level 80/10/10 (``fractions``) over ALL queries, then queries without a
  positive are left out of every split (they cannot be evaluated); the count per split is in notes.
- No traffic: bucketing ``proxy:query-length`` by default.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gr_toolkit.data.loaders import DATASETS, dataset_dir
from gr_toolkit.data.loaders.common import group_query_examples, normalize_queries, numeric_column, read_csv
from gr_toolkit.data.splits import query_level_split
from gr_toolkit.data.types import Catalog, DataError, Dataset

COLUMNS = ("product_uid", "product_title", "search_term", "relevance")


@DATASETS.register("homedepot")
def load_homedepot(
    data_dir=None,
    seed: int = 0,
    positive_threshold: float = 2.67,
    negative_threshold: float = 2.0,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    encoding: str = "latin-1",
    bucketing: str = "proxy:query-length",
) -> Dataset:
    if negative_threshold > positive_threshold:
        raise ValueError(f"negative_threshold {negative_threshold} > positive_threshold {positive_threshold}")
    path = dataset_dir("homedepot", data_dir) / "train.csv"
    df = read_csv(path, encoding, COLUMNS, dtype={"product_uid": str, "product_title": str, "search_term": str})
    notes: list[str] = []
    rel = numeric_column(df, "relevance", path)
    uid = df["product_uid"].str.strip()
    if (uid == "").any():
        i = int(np.argmax((uid == "").to_numpy()))
        raise DataError(f"{path}: column 'product_uid', row {i + 1}: empty product id")

    # Catalog: first title per uid, in order of first appearance.
    first = ~uid.duplicated()
    ids = uid[first].tolist()
    titles = df["product_title"][first].fillna("").astype(str).str.strip().tolist()
    n_conflict = int((df.groupby(uid, sort=False)["product_title"].nunique() > 1).sum())
    if n_conflict:
        notes.append(f"{n_conflict} product_uids appear with more than one title; kept the first")
    n_empty = sum(1 for t in titles if not t)
    if n_empty:
        notes.append(f"{n_empty} products have an empty title (kept in the catalog with empty text)")
    catalog = Catalog(name="homedepot", ids=ids, fields={"title": titles})
    index = pd.Series(np.arange(len(ids)), index=ids)
    items = index.loc[uid].to_numpy(dtype=np.int64)

    q = normalize_queries(df["search_term"])
    empty_q = (q == "").to_numpy()
    if empty_q.any():
        notes.append(f"{int(empty_q.sum())} rows with an empty search_term left out")
    # Average repeated judgments of the same (query, product).
    pairs = pd.DataFrame({"q": q[~empty_q].to_numpy(), "item": items[~empty_q], "rel": rel[~empty_q]})
    agg = pairs.groupby(["q", "item"], sort=False, as_index=False)["rel"].mean()
    if len(agg) < len(pairs):
        notes.append(f"{len(pairs) - len(agg)} repeated (query, product) judgments averaged")

    keys = agg["q"].to_numpy(dtype=object)
    item_arr = agg["item"].to_numpy(dtype=np.int64)
    rel_arr = agg["rel"].to_numpy(dtype=np.float64)
    split = query_level_split(keys, seed=seed, fractions=fractions)
    out = {}
    for s in ("train", "valid", "test"):
        m = split == s
        ex, dropped = group_query_examples(
            keys[m], item_arr[m], grades=rel_arr[m],
            keep=rel_arr[m] >= positive_threshold, negatives_mask=rel_arr[m] < negative_threshold,
        )
        out[s] = ex
        if dropped:
            notes.append(f"{s}: {dropped} queries with no product at relevance >= {positive_threshold} left out "
                         f"({len(ex)} kept)")
    notes.append(f"positives: relevance >= {positive_threshold}; negatives: relevance < {negative_threshold}; "
                 f"query-level split {fractions} (seed {seed}); no traffic counts (weights are 1)")
    return Dataset("homedepot", catalog, out["train"], out["valid"], out["test"], protocol="query-split",
                   bucketing=bucketing, notes=notes)
