"""Reduce item vectors to a model's width (PCA), e.g. 384-d MiniLM vectors to start 128-d token embeddings."""

from __future__ import annotations

import numpy as np


def pca_reduce(vectors: np.ndarray, dim: int) -> np.ndarray:
    """Project centred ``vectors [n, D]`` on their top ``dim`` principal directions (deterministic SVD,
    signs fixed so the largest loading of each direction is positive)."""
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or not 1 <= dim <= x.shape[1]:
        raise ValueError(f"need [n, D] vectors and 1 <= dim <= D; got shape {x.shape}, dim {dim}")
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    comps = vt[:dim]
    comps *= np.sign(comps[np.arange(dim), np.abs(comps).argmax(1)])[:, None]
    return (x @ comps.T).astype(np.float32)
