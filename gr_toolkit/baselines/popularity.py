"""Most-popular baseline: every source gets the items ranked by (weighted) training frequency.

The floor any learned retriever must clear; on head-heavy logs (Best Buy) it is not a trivial one.
Counts come from the TRAINING split only: targets weighted by traffic (search), or every interaction
of the users' training sequences, each once (sequences). ``exclude_history`` drops a user's own history items from their list.
"""

from __future__ import annotations

import numpy as np

from gr_toolkit.data.types import Dataset, Examples


def item_popularity(dataset: Dataset, count_histories: bool = True) -> np.ndarray:
    """Weighted training frequency per item (float64 ``[n_items]``)."""
    train = dataset.train
    n = len(dataset.catalog)
    ex, items = train.pairs()
    if count_histories and train.kind == "history" and train.histories:
        # Every interaction once: loaders emit one example per prefix, so summing raw histories would
        # count an early item once per later position. Rebuild each user's sequence and count that.
        from gr_toolkit.vectors.cf import training_sequences

        seqs = training_sequences(train)
        flat = np.concatenate([np.asarray(s, np.int64) for s in seqs] + [np.zeros(0, np.int64)])
        return np.bincount(flat, minlength=n).astype(np.float64)
    return np.bincount(items, weights=np.asarray(train.weights, np.float64)[ex], minlength=n).astype(np.float64)


class PopularityRetriever:
    def __init__(self, dataset: Dataset, count_histories: bool = True) -> None:
        self.counts = item_popularity(dataset, count_histories)
        # Stable: ties go to the lower item id, so the ranking is deterministic.
        self.order = np.argsort(-self.counts, kind="stable")

    def rank(self, examples: Examples, k: int = 100, exclude_history: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The same top-``k`` for every example (minus its own history items when asked)."""
        n = len(examples)
        k = min(k, len(self.order))
        if not exclude_history or examples.kind != "history":
            items = np.broadcast_to(self.order[:k], (n, k)).copy()
            return items, np.broadcast_to(self.counts[items[0]] if n else np.zeros(k), (n, k)).astype(np.float32).copy()
        # Over-fetch by the longest history, mask seen items, keep the first k survivors per row.
        longest = max((len(h) for h in examples.histories), default=0)
        cand = self.order[: min(len(self.order), k + longest)]
        rows = np.repeat(np.arange(n), [len(h) for h in examples.histories])
        cols = np.concatenate([np.asarray(h, np.int64) for h in examples.histories] + [np.zeros(0, np.int64)])
        seen = np.zeros((n, len(self.counts)), dtype=bool)
        seen[rows, cols] = True
        keep = ~seen[:, cand]
        pos = np.cumsum(keep, axis=1) - 1
        items = np.full((n, k), -1, dtype=np.int64)
        r, c = np.nonzero(keep & (pos < k))
        items[r, pos[r, c]] = cand[c]
        scores = np.where(items >= 0, self.counts[np.maximum(items, 0)], -np.inf).astype(np.float32)
        return items, scores
