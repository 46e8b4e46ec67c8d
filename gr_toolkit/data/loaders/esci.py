"""Amazon Shopping Queries (ESCI) in its official parquet schema: ``esci:PATH``.

``PATH`` is a directory holding ``shopping_queries_dataset_examples.parquet`` and
``shopping_queries_dataset_products.parquet`` (any ``*examples*.parquet`` / ``*products*.parquet``
pair), or the two files joined by a comma: ``esci:examples.parquet,products.parquet``.

- examples: ``query, query_id, product_id, esci_label (E/S/C/I), split (train/test), product_locale``
  (``small_version`` is used when ``small_version=True``);
  products: ``product_id, product_title, product_description, product_bullet_point, product_brand,
  product_color, product_locale``.
- ``locale`` (default ``"us"``; ``None`` = all) filters both files. Catalog ids are ``product_id``
  for one locale and ``locale/product_id`` across locales (the same ASIN differs per locale).
- Targets: Exact (E) products; with ``include_substitutes=True`` also Substitutes (S).
  ``target_grades`` per target use the ESCI gains E=1.0, S=0.1, C=0.01, I=0.0; Irrelevant (I)
  products are the query's ``negatives``. Complements (C) are neither targets nor negatives.
- Queries are lower-cased and whitespace-normalised; an example per distinct normalised query.
- Split: the given ``split`` column (query-level already; a normalised query found in both goes to
  test, counted in notes); validation = a seeded ``valid_share`` (10%) of the distinct training
  queries, so no query straddles splits. Queries without a target
  are left out and counted in notes. No traffic: bucketing ``proxy:query-length``.
- Products judged in examples but missing from the products file raise a ``DataError``; products
  with an empty title are kept with empty text and counted in notes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from gr_toolkit.data.loaders import DATASETS
from gr_toolkit.data.loaders.common import group_query_examples, map_items, normalize_queries
from gr_toolkit.data.splits import carve_validation
from gr_toolkit.data.types import Catalog, DataError, Dataset

GAINS = {"E": 1.0, "S": 0.1, "C": 0.01, "I": 0.0}
EXAMPLE_COLUMNS = ("query", "query_id", "product_id", "esci_label", "split", "product_locale")
PRODUCT_COLUMNS = ("product_id", "product_title", "product_locale")
TEXT_COLUMNS = {"product_title": "title", "product_description": "description",
                "product_bullet_point": "bullet_point", "product_brand": "brand", "product_color": "color"}


def _find_files(path: str) -> tuple[Path, Path]:
    if "," in path:
        a, b = (Path(p.strip()) for p in path.split(",", 1))
        return a, b
    d = Path(path)
    if not d.is_dir():
        raise DataError(f"esci: {d} is not a directory (pass a directory or 'examples.parquet,products.parquet')")
    ex = sorted(d.glob("*examples*.parquet"))
    pr = sorted(d.glob("*products*.parquet"))
    if len(ex) != 1 or len(pr) != 1:
        raise DataError(f"esci: {d} must hold exactly one *examples*.parquet and one *products*.parquet "
                        f"(found {[p.name for p in ex]} and {[p.name for p in pr]})")
    return ex[0], pr[0]


def _read_parquet(path: Path, required) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"esci: file {path} not found")
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a non-parquet file
        raise DataError(f"esci: {path} is not a readable parquet file: {e}") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(f"esci: {path}: missing column(s) {', '.join(missing)}; found {', '.join(df.columns)}")
    return df


@DATASETS.register("esci")
def load_esci(
    path: str,
    data_dir=None,
    seed: int = 0,
    locale: str | None = "us",
    include_substitutes: bool = False,
    small_version: bool = False,
    valid_share: float = 0.1,
) -> Dataset:
    ex_path, pr_path = _find_files(path)
    ex = _read_parquet(ex_path, EXAMPLE_COLUMNS + (("small_version",) if small_version else ()))
    pr = _read_parquet(pr_path, PRODUCT_COLUMNS)
    notes: list[str] = []
    if small_version:
        ex = ex[ex["small_version"].astype(int) == 1]
    if locale is not None:
        ex = ex[ex["product_locale"] == locale]
        pr = pr[pr["product_locale"] == locale]
        if not len(ex):
            raise DataError(f"esci: no examples with product_locale={locale!r} in {ex_path}")
    ex = ex.reset_index(drop=True)
    pr = pr.reset_index(drop=True)
    label = ex["esci_label"].astype(str)
    bad = ~label.isin(list(GAINS))
    if bad.any():
        i = int(np.argmax(bad.to_numpy()))
        raise DataError(f"esci: {ex_path}: column 'esci_label', row {i + 1}: value {label.iloc[i]!r} is not E/S/C/I")
    split_col = ex["split"].astype(str)
    bad = ~split_col.isin(["train", "test"])
    if bad.any():
        i = int(np.argmax(bad.to_numpy()))
        raise DataError(f"esci: {ex_path}: column 'split', row {i + 1}: value {split_col.iloc[i]!r} is not train/test")

    multi = locale is None
    pid = (pr["product_locale"].astype(str) + "/" + pr["product_id"].astype(str)) if multi else pr["product_id"].astype(str)
    dup = pid.duplicated(keep=False).to_numpy()
    if dup.any():
        rows = np.flatnonzero(dup)[:2]
        raise DataError(f"esci: {pr_path}: duplicate product id {pid.iloc[rows[0]]!r} (rows {rows[0] + 1} and {rows[1] + 1})")
    fields = {}
    for col, name in TEXT_COLUMNS.items():
        if col in pr.columns:
            fields[name] = pr[col].fillna("").astype(str).str.strip().tolist()
    n_empty = sum(1 for t in fields["title"] if not t)
    if n_empty:
        notes.append(f"{n_empty} products have an empty title (kept with empty text)")
    catalog = Catalog(name=f"esci-{locale or 'all'}", ids=pid.tolist(), fields=fields,
                      attributes={"locale": pr["product_locale"].astype(str).tolist()})
    index = dict(zip(catalog.ids, range(len(catalog)), strict=True))
    ex_pid = (ex["product_locale"].astype(str) + "/" + ex["product_id"].astype(str)) if multi else ex["product_id"].astype(str)
    items = map_items(ex_pid.to_numpy(dtype=object), index, ex_path, "product_id", np.arange(len(ex)) + 1)

    grades = label.map(GAINS).to_numpy(dtype=np.float64)
    target_labels = ["E", "S"] if include_substitutes else ["E"]
    is_target = label.isin(target_labels).to_numpy()
    is_neg = (label == "I").to_numpy()
    # Examples are keyed by the normalised query text (the model's input), so the validation
    # carve-out is by text too: a query's judgments stay together.
    qtext = normalize_queries(ex["query"]).to_numpy(dtype=object)
    in_valid = (split_col == "train").to_numpy() & carve_validation(qtext, seed=seed, share=valid_share)
    split = np.where(in_valid, "valid", split_col.to_numpy())
    both = set(qtext[split == "test"]) & set(qtext[split != "test"])
    if both:
        # Case/spacing variants of one query given to both train and test: the test copy wins.
        split = np.where(np.isin(qtext, list(both)), "test", split)
        notes.append(f"{len(both)} normalised queries occurred in both given splits; all their judgments moved to test")
    out = {}
    for s in ("train", "valid", "test"):
        m = split == s
        e, dropped = group_query_examples(qtext[m], items[m], grades=grades[m],
                                          keep=is_target[m], negatives_mask=is_neg[m])
        out[s] = e
        if dropped:
            notes.append(f"{s}: {dropped} queries with no {'/'.join(target_labels)} product left out ({len(e)} kept)")
    notes.append(f"ESCI targets: {'+'.join(target_labels)}; grades E=1, S=0.1, C=0.01, I=0; negatives: I; "
                 f"locale={locale}; validation = seeded {valid_share:.0%} of training queries (seed {seed})")
    return Dataset(f"esci-{locale or 'all'}", catalog, out["train"], out["valid"], out["test"],
                   protocol="query-split", bucketing="proxy:query-length", notes=notes)
