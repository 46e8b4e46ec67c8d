"""Best Buy mobile search log, Xbox category (Kaggle 2012): each row is a search that ended in a click.

- Files ``bestbuy_xbox/{train,test}.csv`` (utf-8): ``user, sku, category, query, click_time, query_time``.
- Queries are lower-cased and whitespace-normalised; rows whose query is then empty are left out
  (counted in notes).
- Catalog: every sku of BOTH files (test-only skus must be retrievable), sorted by sku. Products have
  no names, so an item's ``title`` is made of the TRAINING queries that clicked it (after the
  validation carve-out, so neither validation nor test text leaks into the catalog): its distinct
  queries, most clicked first, at most ``max_title_queries``, joined by " | ". Items never clicked in
  training get an empty title (counted in notes). ``category`` is kept as an attribute.
- Split: the given train/test files; validation = a seeded random ``valid_share`` (12.5%) of the
  training ROWS (clicks), like the given 80/20 row split, so validation looks like test (head
  queries occur in every split) and is about 10% of all clicks.
- Train examples: one per (query, sku) with weight = clicks, so ``pairs()`` with example weights is
  the click-weighted training signal. Valid/test examples: one per distinct query, targets = the
  distinct clicked skus (most clicked first), ``target_grades`` = clicks per target, weight = the
  query's clicks in that split.
- Buckets: by training traffic (``traffic``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gr_toolkit.data.loaders import DATASETS, dataset_dir
from gr_toolkit.data.loaders.common import group_query_examples, normalize_queries, read_csv
from gr_toolkit.data.types import Catalog, DataError, Dataset, Examples

COLUMNS = ("user", "sku", "category", "query")


def _read(path) -> pd.DataFrame:
    df = read_csv(path, "utf-8", COLUMNS, dtype=str)
    sku = df["sku"].str.strip()
    if (sku == "").any():
        i = int(np.argmax((sku == "").to_numpy()))
        raise DataError(f"{path}: column 'sku', row {i + 1}: empty sku")
    return pd.DataFrame({"sku": sku, "category": df["category"].str.strip(), "q": normalize_queries(df["query"])})


@DATASETS.register("bestbuy")
def load_bestbuy(
    data_dir=None,
    seed: int = 0,
    valid_share: float = 0.125,
    max_title_queries: int = 20,
) -> Dataset:
    root = dataset_dir("bestbuy", data_dir)
    train_df, test_df = _read(root / "train.csv"), _read(root / "test.csv")
    notes: list[str] = []
    for name, df in (("train.csv", train_df), ("test.csv", test_df)):
        empty = (df["q"] == "").sum()
        if empty:
            notes.append(f"{name}: {int(empty)} rows with an empty query left out")
    train_df = train_df[train_df["q"] != ""]
    test_df = test_df[test_df["q"] != ""]

    # Catalog over both files.
    all_sku = pd.concat([train_df[["sku", "category"]], test_df[["sku", "category"]]])
    first = all_sku.drop_duplicates("sku").sort_values("sku", key=lambda s: s.str.zfill(20))
    ids = first["sku"].tolist()
    index = pd.Series(np.arange(len(ids)), index=ids)

    # Validation carve-out by row, seeded.
    rng = np.random.default_rng(seed)
    is_valid = rng.random(len(train_df)) < valid_share
    tr, va = train_df[~is_valid], train_df[is_valid]

    # Item text from training queries only.
    qc = tr.groupby(["sku", "q"]).size().rename("clicks").reset_index()
    qc = qc.sort_values(["sku", "clicks", "q"], ascending=[True, False, True])
    qc = qc.groupby("sku", sort=False).head(max_title_queries)
    text = qc.groupby("sku", sort=False)["q"].agg(" | ".join)
    titles = text.reindex(ids).fillna("").tolist()
    n_untitled = sum(1 for t in titles if not t)
    if n_untitled:
        notes.append(f"{n_untitled} of {len(ids)} skus have no training query, so an empty title")
    catalog = Catalog(name="bestbuy", ids=ids, fields={"title": titles},
                      attributes={"category": first["category"].tolist()})

    # Train: one example per (query, sku), weight = clicks.
    pc = tr.groupby(["q", "sku"]).size().rename("clicks").reset_index()
    train = Examples(
        kind="query",
        targets=[np.array([i], dtype=np.int64) for i in index.loc[pc["sku"]].to_numpy()],
        queries=pc["q"].tolist(),
        weights=pc["clicks"].to_numpy(dtype=np.float64),
        target_grades=[np.array([c], dtype=np.float64) for c in pc["clicks"].to_numpy()],
        keys=pc["q"].tolist(),
    )

    def grouped(df: pd.DataFrame) -> Examples:
        c = df.groupby(["q", "sku"]).size().rename("clicks").reset_index()
        ex, _ = group_query_examples(c["q"].to_numpy(dtype=object), index.loc[c["sku"]].to_numpy(),
                                     grades=c["clicks"].to_numpy(dtype=np.float64),
                                     weights=c["clicks"].to_numpy(dtype=np.float64))
        ex.negatives = None
        return ex

    valid, test = grouped(va), grouped(test_df)
    notes.append(f"given train/test split; validation = seeded {valid_share:.1%} of training clicks (seed {seed}); "
                 f"train examples are (query, sku) pairs weighted by clicks; item titles = training queries")
    return Dataset("bestbuy", catalog, train, valid, test, protocol="given-split", bucketing="traffic", notes=notes)
