"""Top-K maximum-inner-product search over item vectors: exact (chunked matrix product) or faiss.

``exact`` is the reference; ``faiss-flat`` (IndexFlatIP) is exact too but uses faiss' BLAS kernels;
``faiss-ivf`` (IndexIVFFlat, inner product) is approximate: ``nprobe`` of ``nlist`` cells are scanned.
"""

from __future__ import annotations

import numpy as np
import torch

METHODS = ("exact", "faiss-flat", "faiss-ivf")


def exact_topk(queries: np.ndarray | torch.Tensor, items: np.ndarray | torch.Tensor, k: int, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` by inner product; ties broken by the lower item id (torch.topk is stable enough here)."""
    q = torch.as_tensor(queries, dtype=torch.float32)
    it = torch.as_tensor(items, dtype=torch.float32).to(q.device)
    k = min(k, it.shape[0])
    out_i, out_s = [], []
    with torch.no_grad():
        for s in range(0, q.shape[0], chunk):
            top = (q[s : s + chunk] @ it.T).topk(k, dim=1)
            out_i.append(top.indices.cpu().numpy())
            out_s.append(top.values.cpu().numpy())
    if not out_i:
        return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
    return np.concatenate(out_i).astype(np.int64), np.concatenate(out_s).astype(np.float32)


class FaissIndex:
    """A faiss inner-product index over item vectors (built once, searched many times)."""

    def __init__(self, items: np.ndarray, method: str = "faiss-flat", nlist: int | None = None, nprobe: int = 8, seed: int = 0) -> None:
        import faiss

        x = np.ascontiguousarray(items, dtype=np.float32)
        n, d = x.shape
        if method == "faiss-flat":
            self.index = faiss.IndexFlatIP(d)
        elif method == "faiss-ivf":
            nlist = nlist or max(1, min(int(4 * np.sqrt(n)), n // 39 or 1))
            quant = faiss.IndexFlatIP(d)
            self.index = faiss.IndexIVFFlat(quant, d, nlist, faiss.METRIC_INNER_PRODUCT)
            self.index.cp.seed = seed
            self.index.train(x)
            self.index.nprobe = min(nprobe, nlist)
            self._quant = quant  # keep the coarse quantizer alive with the index
        else:
            raise ValueError(f"unknown faiss method {method!r}; use one of {METHODS[1:]}")
        self.index.add(x)
        self.n_items = n

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, self.n_items)
        scores, ids = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        # faiss marks empty slots with -1 (IVF with too few probed items); keep -1 = empty, as metrics expect.
        return ids.astype(np.int64), scores.astype(np.float32)


def topk(queries: np.ndarray, items: np.ndarray, k: int, method: str = "exact", **kw) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` item ids and scores for each query vector with the named method."""
    if method == "exact":
        return exact_topk(queries, items, k)
    if method in METHODS:
        return FaissIndex(items, method, **kw).search(queries, k)
    raise ValueError(f"unknown top-K method {method!r}; use one of {', '.join(METHODS)}")
