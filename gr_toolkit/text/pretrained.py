"""Frozen pretrained text encoders as source features: all-MiniLM-L6-v2 token states, cached per text.

A generative retriever that reads query text through a randomly initialised embedding table has to
learn language from a few thousand training queries. Reading the token states of a pretrained
encoder instead gives it MiniLM's vocabulary and word sense for free. The encoder is frozen, so its
states are a pure function of the text: :class:`TokenStateCache` computes them once per distinct
text (sorted by length, in large batches) and keeps them as float16 in memory, shared by every cache
of the same model and length in the process (a recipe training several seeds encodes each text once),
which keeps CPU training at the cost of a small model. With ``persist=True`` (the featurizer's
default) new states are also written to ``$GR_CACHE_DIR/text-states/`` as ``.npz`` shards (texts,
lengths, float16 states; no pickles), so the next process reads them instead of re-encoding.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from gr_toolkit.paths import cache_root

#: Width of all-MiniLM-L6-v2's token states.
MINILM_DIM = 384
#: Source encoders a featurizer can use: ``native`` = the toolkit's own sentencepiece ids; ``minilm`` =
#: frozen MiniLM token states; ``smollm2`` = the prompt in SmolLM2's own token ids (for that LM).
SOURCE_ENCODERS = ("native", "minilm", "smollm2")


_STORES: dict[tuple[str, int], dict[str, np.ndarray]] = {}
_LOADED: dict[tuple[str, int], set[str]] = {}


class TokenStateCache:
    """Last-layer token states (``[CLS]``..``[SEP]``) of a frozen sentence-transformers model.

    ``states(texts)`` gives ``(features [B, T, dim] float32, mask [B, T] bool)`` with real positions
    left-aligned; a text longer than ``max_len`` word pieces is truncated by the encoder.
    """

    def __init__(self, max_len: int = 32, model_path: str | Path | None = None, batch_size: int = 256,
                 device: str | None = None, persist: bool = False) -> None:
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
        # only the bundled model is cached on disk: a user's model_path may change under the same name
        self.disk_dir = cache_root() / "text-states" / f"all-MiniLM-L6-v2-len{self.max_len}" if (
            persist and model_path is None) else None
        self._loaded_shards: set[str] = _LOADED.setdefault((str(model_path), self.max_len), set())

    def _load_disk(self) -> None:
        if self.disk_dir is None or not self.disk_dir.is_dir():
            return
        for shard in sorted(self.disk_dir.glob("*.npz")):
            if shard.name in self._loaded_shards:
                continue
            try:
                with np.load(shard, allow_pickle=False) as z:
                    texts, lengths, states = z["texts"], z["lengths"], z["states"]
            except (OSError, ValueError, KeyError, EOFError):
                continue  # a damaged shard is only a cache miss: those texts are encoded again
            if states.ndim != 2 or states.shape[1] != self.dim or int(lengths.sum()) != len(states):
                continue
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
            for text, a, n in zip(texts.tolist(), starts.tolist(), lengths.tolist(), strict=True):
                self._cache.setdefault(text, states[a:a + n])
            self._loaded_shards.add(shard.name)

    def _save_disk(self, texts: list[str]) -> None:
        if self.disk_dir is None or not texts:
            return
        self.disk_dir.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256("\x00".join(texts).encode("utf-8")).hexdigest()[:20] + ".npz"
        rows = [self._cache[t] for t in texts]
        tmp = self.disk_dir / f".{name}.{os.getpid()}.tmp.npz"
        np.savez(tmp, texts=np.array(texts, dtype=np.str_), lengths=np.array([len(r) for r in rows], np.int64),
                 states=np.concatenate(rows).astype(np.float16))
        os.replace(tmp, self.disk_dir / name)  # atomic: a reader never sees a half-written shard
        self._loaded_shards.add(name)

    def __len__(self) -> int:
        return len(self._cache)

    def count_missing(self, texts: Sequence[str]) -> int:
        if self.disk_dir is not None:
            self._load_disk()
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
        if missing and self.disk_dir is not None:
            self._load_disk()
            missing = [t for t in missing if t not in self._cache]
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
        self._save_disk(missing)
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
