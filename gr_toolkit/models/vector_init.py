"""Start identifier-token embeddings from item vectors (e.g. the SASRec vectors the tree was built from).

Every token of a code index stands for the set of items whose identifier contains it: a leaf for one
item, a tree node or an RQ code for many. Its starting embedding is the mean vector of that set, so
the decoder begins where the vectors already separate items instead of from noise; with SEATER's
shared leaf embeddings the encoder's item embeddings start from the same vectors. Rows are rescaled,
level by level, to the spread of the table's random init so the model's input scaling still holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from gr_toolkit.data.types import Catalog
from gr_toolkit.vectors.io import VectorError, load_vectors, validate_vectors


def load_item_vectors(path: str | Path, n_items: int, dim: int | tuple[int, ...],
                      catalog: Catalog | None = None) -> np.ndarray:
    """Read ``[n_items, dim]`` vectors (``gr_toolkit.vectors.io`` checks, plus the model's width)."""
    vec = validate_vectors(load_vectors(path, catalog), n_items, where=str(path))
    widths = (dim,) if isinstance(dim, int) else tuple(dim)
    if vec.shape[1] not in widths:
        raise VectorError(f"{path}: {vec.shape[1]}-d vectors, but the model takes {' or '.join(map(str, widths))}-d "
                          "item vectors")
    return vec


def token_mean_vectors(codes: np.ndarray, vocab_size: int, item_vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean item vector per token over the items whose code contains it, and which tokens have any."""
    n, length = codes.shape
    flat = codes.reshape(-1)
    owner = np.repeat(np.arange(n), length)
    keep = flat >= 0
    sums = np.zeros((vocab_size, item_vectors.shape[1]), dtype=np.float64)
    np.add.at(sums, flat[keep], item_vectors[owner[keep]])
    counts = np.bincount(flat[keep], minlength=vocab_size)
    has = counts > 0
    sums[has] /= counts[has, None]
    return sums.astype(np.float32), has


def init_tokens_from_item_vectors(model: Any, index: Any, item_vectors: np.ndarray) -> int:
    """Overwrite the identifier rows of ``model.token_embeddings()`` in place; return how many were set."""
    codes = getattr(index, "codes", None)
    if codes is None:
        raise ValueError(f"{index.scheme!r} identifiers are not fixed per item (no codes): "
                         "initialising tokens from item vectors needs a code index (seater, rq)")
    item_vectors = model.adopt_item_vectors(np.asarray(item_vectors, dtype=np.float32))
    table = model.token_embeddings()
    rows, has = token_mean_vectors(np.asarray(codes), int(index.vocab_size), item_vectors)
    level = np.asarray(getattr(index, "token_level", np.zeros(index.vocab_size, dtype=np.int64)))
    with torch.no_grad():
        target_std = float(table[: index.vocab_size].std())
        out = torch.from_numpy(rows)
        for lv in np.unique(level[has]):
            sel = torch.from_numpy(np.flatnonzero(has & (level == lv)))
            block = out[sel]
            if len(sel) > 1:  # the level's shared direction says nothing about any one token
                block = block - block.mean(0)
            spread = float(block.std())
            out[sel] = block * (target_std / spread) if spread > 0 else block
        sel = torch.from_numpy(np.flatnonzero(has))
        table[sel] = out[sel].to(table.dtype).to(table.device)
    return int(has.sum())
