"""Cheap item vectors from titles: TF-IDF (word 1-2-grams) + truncated SVD (LSA), L2-normalised.

A fast stand-in for the MiniLM text vectors when CPU time is short (54,667 Home Depot titles take
seconds): ``python recipes/lsa_vectors.py homedepot --dim 64 --out indexes/vectors/homedepot__lsa64.npy``.
Row i = catalog item i; a JSON sidecar records the catalog fingerprint, as ``gr-toolkit index --vectors`` expects.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer

from gr_toolkit.data.loaders import load_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("dataset")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--field", default="title")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    ds = load_dataset(args.dataset, seed=args.seed)
    texts = ds.catalog.text(args.field)
    tfidf = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit_transform(texts)
    vec = TruncatedSVD(args.dim, random_state=args.seed).fit_transform(tfidf).astype(np.float32)
    vec /= np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, vec)
    out.with_suffix(".json").write_text(json.dumps({"dataset": ds.name, "method": "tfidf-lsa", "dim": args.dim,
                                                    "catalog_fingerprint": ds.catalog.fingerprint(),
                                                    "n_items": len(ds.catalog)}) + "\n")
    print(f"wrote {out} {vec.shape}")


if __name__ == "__main__":
    main()
