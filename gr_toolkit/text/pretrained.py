"""Frozen pretrained text encoders as source features: all-MiniLM-L6-v2 token states, cached per text.

A generative retriever that reads query text through a randomly initialised embedding table has to
learn language from a few thousand training queries. Reading the token states of a pretrained
encoder instead gives it MiniLM's vocabulary and word sense for free. The encoder is frozen, so its
states are a pure function of the text: :class:`TokenStateCache` computes them once per distinct
text (sorted by length, in large batches) and keeps them as float16 in memory, shared by every cache
of the same model and length in the process (a recipe training several seeds encodes each text once),
which keeps CPU training at the cost of a small model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

#: Width of all-MiniLM-L6-v2's token states.
MINILM_DIM = 384
#: Source encoders a featurizer can use: ``native`` = the toolkit's own sentencepiece ids.
SOURCE_ENCODERS = ("native", "minilm")


_STORES: dict[tuple[str, int], dict[str, np.ndarray]] = {}


class TokenStateCache:
    """Last-layer token states (``[CLS]``..``[SEP]``) of a frozen sentence-transformers model.

    ``states(texts)`` gives ``(features [B, T, dim] float32, mask [B, T] bool)`` with real positions
    left-aligned; a text longer than ``max_len`` word pieces is truncated by the encoder.
    """

    def __init__(self, max_len: int = 32, model_path: str | Path | None = None, batch_size: int = 256,
                 device: str | None = None) -> None:
        if max_len < 2:
            raise ValueError(f"max_len must be >= 2 (CLS and SEP), got {max_len}")
        self.max_len = int(max_len)
        self.model_path = model_path
        self.batch_size = int(batch_size)
        self.device = device
        self.dim = MINILM_DIM
        self._encoder = None
        # one store per (model, max_len) for the whole process: the states depend on nothing else
        self._cache: dict[str, np.ndarray] = _STORES.setdefault((str(model_path), self.max_len), {})

    def __len__(self) -> int:
        return len(self._cache)

    def count_missing(self, texts: Sequence[str]) -> int:
        return sum(1 for t in set(texts) if t not in self._cache)

    def _model(self):
        if self._encoder is None:
            from gr_toolkit.vectors.text import load_sentence_encoder

            self._encoder = load_sentence_encoder(self.model_path, device=self.device or "cpu")
            self._encoder.max_seq_length = self.max_len
            self.dim = int(self._encoder.get_embedding_dimension())
        return self._encoder

    def prepare(self, texts: Sequence[str], progress: Callable[[int, int], None] | None = None) -> int:
        """Encode every text not cached yet; returns how many were new."""
        import torch

        missing = sorted({t for t in texts if t not in self._cache}, key=len)
        if not missing:
            return 0
        enc = self._model()
        with torch.inference_mode():
            for start in range(0, len(missing), self.batch_size):
                chunk = missing[start:start + self.batch_size]
                out = enc.encode(chunk, output_value="token_embeddings", batch_size=len(chunk),
                                 convert_to_numpy=False, show_progress_bar=False)
                for text, states in zip(chunk, out, strict=True):
                    self._cache[text] = states.detach().to("cpu", torch.float16).numpy()
                if progress is not None:
                    progress(min(start + self.batch_size, len(missing)), len(missing))
        return len(missing)

    def states(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        self.prepare(texts)
        rows = [self._cache[t] for t in texts]
        lens = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        width = max(1, int(lens.max(initial=0)))
        feats = np.zeros((len(rows), width, self.dim), dtype=np.float32)
        mask = np.arange(width)[None, :] < lens[:, None]
        if len(rows):
            feats[mask] = np.concatenate(rows).astype(np.float32)
        return feats, mask
