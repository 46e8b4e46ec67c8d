"""Item-vector files: a float ``[n_items, d]`` ``.npy`` aligned with a catalog, plus a JSON sidecar.

Schemes consume vectors, not models, so a user may bring their own ``.npy``. Everything that reads one
goes through :func:`load_vectors`, which checks shape, dtype and finiteness against the catalog and
fails with a message naming the file and the offending value.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from gr_toolkit.data.types import Catalog


class VectorError(ValueError):
    """An item-vector file is missing, malformed, or does not match the catalog."""


def sidecar_path(path: str | Path) -> Path:
    """``items.npy`` -> ``items.json`` (method, dataset, catalog fingerprint, ...)."""
    path = Path(path)
    return path.with_suffix(".json")


def validate_vectors(vectors: np.ndarray, n_items: int | None = None, where: str = "vectors") -> np.ndarray:
    """Return ``vectors`` as C-contiguous float32 ``[n, d]``; raise :class:`VectorError` when unusable."""
    arr = np.asarray(vectors)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise VectorError(f"{where}: expected a real numeric array, found dtype {arr.dtype}")
    if arr.ndim != 2:
        raise VectorError(f"{where}: expected a 2-d array [n_items, dim], found shape {tuple(arr.shape)}")
    if arr.shape[1] == 0:
        raise VectorError(f"{where}: vectors have dimension 0 (shape {tuple(arr.shape)})")
    if n_items is not None and arr.shape[0] != n_items:
        raise VectorError(
            f"{where}: {arr.shape[0]} rows but the catalog has {n_items} items (row i must be catalog item i)"
        )
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    bad = ~np.isfinite(arr)
    if bad.any():
        row, col = (int(x) for x in np.argwhere(bad)[0])
        raise VectorError(
            f"{where}: {int(bad.sum())} non-finite value(s) (NaN/inf); first at row {row}, column {col}: {arr[row, col]}"
        )
    return arr


def save_vectors(path: str | Path, vectors: np.ndarray, meta: dict[str, Any] | None = None) -> Path:
    """Write ``vectors`` to ``path`` (.npy) and ``meta`` to its JSON sidecar, each atomically."""
    path = Path(path)
    if path.suffix != ".npy":
        raise VectorError(f"{path}: item-vector files must end in .npy")
    arr = validate_vectors(vectors, where=str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write to a temporary sibling and rename, so a crash never leaves a truncated file behind.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npy", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, arr, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    side = {"shape": list(arr.shape), "dtype": str(arr.dtype), **(meta or {})}
    sp = sidecar_path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{sp.name}.", suffix=".json", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(side, f, indent=2, sort_keys=True)
    os.replace(tmp, sp)
    return path


def read_sidecar(path: str | Path) -> dict[str, Any] | None:
    sp = sidecar_path(path)
    if not sp.exists():
        return None
    try:
        return json.loads(sp.read_text())
    except json.JSONDecodeError as e:
        raise VectorError(f"{sp}: sidecar is not valid JSON: {e}") from None


def load_vectors(path: str | Path, catalog: Catalog | None = None) -> np.ndarray:
    """Load and validate an item-vector ``.npy`` (float32 ``[n_items, d]``).

    With a ``catalog`` the row count must equal its size, and when a sidecar records a catalog
    fingerprint it must match (vectors built for another catalog order are silently wrong otherwise).
    """
    path = Path(path)
    if not path.exists():
        raise VectorError(f"item-vector file not found: {path}")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, EOFError) as e:  # EOFError: an empty or cut file (click would print "Aborted.")
        raise VectorError(f"{path}: cannot be read as a numpy array (empty, cut, pickled or corrupt?): "
                          f"{e or type(e).__name__}") from None
    except OSError as e:
        raise VectorError(f"{path}: cannot be read: {e}") from None
    if catalog is not None:
        side = read_sidecar(path)
        fp = (side or {}).get("catalog_fingerprint")
        if fp and fp != catalog.fingerprint():
            raise VectorError(
                f"{path}: built for catalog fingerprint {fp} ({side.get('dataset', '?')}), "
                f"but catalog {catalog.name!r} has fingerprint {catalog.fingerprint()}"
            )
    return validate_vectors(arr, None if catalog is None else len(catalog), where=str(path))


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, eps)).astype(np.float32)
