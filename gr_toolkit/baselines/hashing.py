"""Hashed bag-of-features text encoding for two-tower models (no vocabulary to fit or store).

A text becomes the hashes of its lower-cased words, adjacent word pairs and the character trigrams of
each word (``#dr``, ``dri``, ``ril``, ``ill``, ``ll#``): the classic DSSM "word hashing", which copes
with typos and unseen words in queries ("cordles drill"). Hashes are stable across processes (crc32,
not Python's salted ``hash``), so a saved model can encode new text.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

import numpy as np

_WORD = re.compile(r"[a-z0-9]+(?:[.'][a-z0-9]+)*")


@dataclass
class HashedBags:
    """Texts as a flat CSR bag: ``ids[offsets[i]:offsets[i+1]]`` are text i's feature buckets."""

    ids: np.ndarray  # int64, unique within a text
    offsets: np.ndarray  # int64, len n+1
    # Share of the text's features that fall in each bucket (sums to 1 per non-empty text): a weighted
    # sum over unique buckets equals the mean over all features, with far fewer lookups for long texts.
    weights: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def take(self, idx: np.ndarray) -> HashedBags:
        """The bags of rows ``idx`` (vectorised gather over the CSR arrays)."""
        idx = np.asarray(idx, dtype=np.int64)
        starts, ends = self.offsets[idx], self.offsets[idx + 1]
        lens = ends - starts
        offs = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(lens, out=offs[1:])
        # position of every output element in the source ids
        src = np.repeat(starts - offs[:-1], lens) + np.arange(offs[-1])
        return HashedBags(self.ids[src], offs, None if self.weights is None else self.weights[src])


def text_features(text: str, char_ngrams: bool = True, word_pairs: bool = True) -> list[str]:
    words = _WORD.findall(text.lower())
    feats = [f"w:{w}" for w in words]
    if word_pairs:
        feats += [f"p:{a}_{b}" for a, b in zip(words[:-1], words[1:], strict=True)]
    if char_ngrams:
        for w in words:
            s = f"#{w}#"
            feats += [f"c:{s[i:i + 3]}" for i in range(len(s) - 2)]
    return feats


def hash_texts(texts: list[str], n_buckets: int, char_ngrams: bool = True, word_pairs: bool = True) -> HashedBags:
    """Hash every text's features into ``[0, n_buckets)``; an empty text gets an empty bag."""
    if n_buckets < 2:
        raise ValueError(f"n_buckets must be >= 2, got {n_buckets}")
    cache: dict[str, int] = {}
    ids: list[int] = []
    weights: list[float] = []
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    for i, t in enumerate(texts):
        counts: dict[int, int] = {}
        feats = text_features(t or "", char_ngrams, word_pairs)
        for f in feats:
            h = cache.get(f)
            if h is None:
                h = cache[f] = zlib.crc32(f.encode("utf-8")) % n_buckets
            counts[h] = counts.get(h, 0) + 1
        ids.extend(counts)
        weights.extend(c / len(feats) for c in counts.values())
        offsets[i + 1] = len(ids)
    return HashedBags(np.asarray(ids, dtype=np.int64), offsets, np.asarray(weights, dtype=np.float32))
