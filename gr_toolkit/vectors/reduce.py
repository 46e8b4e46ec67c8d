"""Reduce item vectors to a model's width (PCA), e.g. 384-d MiniLM vectors to start 128-d token embeddings."""

from __future__ import annotations

import numpy as np


def pca_components(vectors: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """``(mean [D], components [dim, D])`` of ``vectors [n, D]`` (deterministic SVD, signs fixed so the
    largest loading of each direction is positive)."""
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or not 1 <= dim <= x.shape[1]:
        raise ValueError(f"need [n, D] vectors and 1 <= dim <= D; got shape {x.shape}, dim {dim}")
    mean = x.mean(0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    comps = vt[:dim]
    comps *= np.sign(comps[np.arange(dim), np.abs(comps).argmax(1)])[:, None]
    return mean, comps


def pca_reduce(vectors: np.ndarray, dim: int) -> np.ndarray:
    """Project centred ``vectors [n, D]`` on their top ``dim`` principal directions."""
    mean, comps = pca_components(vectors, dim)
    return ((np.asarray(vectors, dtype=np.float64) - mean) @ comps.T).astype(np.float32)
