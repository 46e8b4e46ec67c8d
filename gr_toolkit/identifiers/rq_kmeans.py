"""Residual k-means (RQ-KMeans): level-wise faiss k-means on the residuals of the previous levels.

Level 0 clusters the vectors; level l clusters what levels 0..l-1 left unexplained. An item's code is
its nearest centroid per level. A level's codebook is capped at the number of DISTINCT residual rows
(k-means cannot place more distinct centroids than there are distinct points: e.g. 413 Best Buy items
cannot fill 256 entries on every level); the caps are reported in ``RQResult.notes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class RQResult:
    codes: np.ndarray  # [n, L] codebook entry per level
    codebook_sizes: list[int]  # actual sizes (after the distinct-point cap)
    codebooks: list[np.ndarray]  # [C_l, d] centroids (empty for methods without explicit ones)
    recon_mse: list[float]  # mean squared norm of the residual after each level (in the quantised space)
    notes: list[str] = field(default_factory=list)
    history: dict[str, list[float]] = field(default_factory=dict)


def distinct_rows(x: np.ndarray) -> int:
    return int(len(np.unique(x, axis=0)))


def kmeans_level(x: np.ndarray, k: int, seed: int, n_iter: int, max_points_per_centroid: int = 256) -> np.ndarray:
    """Centroids ``[k, d]`` of a seeded faiss k-means."""
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    if k == 1:  # faiss needs k >= 2 for a meaningful run; the mean is the exact 1-means optimum
        return x.mean(axis=0, keepdims=True)
    km = faiss.Kmeans(
        x.shape[1],
        k,
        niter=n_iter,
        seed=seed,
        verbose=False,
        min_points_per_centroid=1,  # small catalogs are legitimate; do not warn on n < 39k
        max_points_per_centroid=max_points_per_centroid,
    )
    km.train(x)
    return np.asarray(km.centroids, dtype=np.float32)


def nearest(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    import faiss

    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    _, idx = index.search(np.ascontiguousarray(x, dtype=np.float32), 1)
    return idx[:, 0].astype(np.int64)


def residual_kmeans(
    x: np.ndarray, codebook_sizes: list[int], seed: int = 0, n_iter: int = 20, max_points_per_centroid: int = 256
) -> RQResult:
    residual = np.ascontiguousarray(x, dtype=np.float32).copy()
    codes, sizes, books, mse, notes = [], [], [], [], []
    for lvl, want in enumerate(codebook_sizes):
        n_distinct = distinct_rows(residual)
        k = min(int(want), n_distinct)
        if k < want:
            notes.append(
                f"level {lvl}: codebook capped at {k} (< {want} requested): only {n_distinct} distinct residual vectors"
            )
        centroids = kmeans_level(residual, k, seed + lvl, n_iter, max_points_per_centroid)
        assign = nearest(residual, centroids)
        residual -= centroids[assign]
        codes.append(assign)
        sizes.append(k)
        books.append(centroids)
        mse.append(float((residual.astype(np.float64) ** 2).sum(axis=1).mean()))
    return RQResult(codes=np.stack(codes, axis=1), codebook_sizes=sizes, codebooks=books, recon_mse=mse, notes=notes)


def encode_with_codebooks(x: np.ndarray, codebooks: list[np.ndarray]) -> np.ndarray:
    """Codes of new vectors under saved centroids (e.g. items added after the index was built)."""
    residual = np.ascontiguousarray(x, dtype=np.float32).copy()
    out = []
    for c in codebooks:
        a = nearest(residual, c)
        residual -= c[a]
        out.append(a)
    return np.stack(out, axis=1)
