"""Evaluation protocols as split functions.

- ``leave_one_out``: sequences; last item = test target, second-last = validation target, every
  earlier position of the sequence is a training target (prefix examples, as SASRec/TIGER/P5 train).
- ``query_level_split``: search; each distinct query goes to exactly one split (seeded), so a query's
  judged pairs never straddle train and test.
- ``carve_validation``: a seeded share of the distinct training queries moved to validation
  (Best Buy, whose train/test split is given).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from gr_toolkit.data.types import DataError, Examples

SPLITS = ("train", "valid", "test")


def _seeded_unit(keys: Sequence[str], seed: int) -> np.ndarray:
    """A uniform [0, 1) number per key that depends only on (key, seed): stable under reordering
    or adding other keys, so a query keeps its split when the data grows."""
    out = np.empty(len(keys), dtype=np.float64)
    salt = f"{seed}:".encode()
    for i, k in enumerate(keys):
        h = hashlib.blake2b(salt + k.encode("utf-8"), digest_size=8).digest()
        out[i] = int.from_bytes(h, "little") / 2.0**64
    return out


def query_level_split(
    query_keys: Sequence[str], seed: int = 0, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> np.ndarray:
    """Split name (``train``/``valid``/``test``) per query key; equal keys always get the same split."""
    f = np.asarray(fractions, dtype=np.float64)
    if f.shape != (3,) or (f < 0).any() or abs(f.sum() - 1.0) > 1e-6:
        raise ValueError(f"fractions must be three non-negative shares summing to 1, got {fractions}")
    uniq, inverse = np.unique(np.asarray(query_keys, dtype=object).astype(str), return_inverse=True)
    u = _seeded_unit(list(uniq), seed)
    names = np.where(u < f[0], "train", np.where(u < f[0] + f[1], "valid", "test"))
    return names[inverse]


def carve_validation(query_keys: Sequence[str], seed: int = 0, share: float = 0.1) -> np.ndarray:
    """True for keys moved from train to validation (a seeded ``share`` of the distinct keys)."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"validation share must be in [0, 1), got {share}")
    uniq, inverse = np.unique(np.asarray(query_keys, dtype=object).astype(str), return_inverse=True)
    return (_seeded_unit(list(uniq), seed + 7919) < share)[inverse]


def leave_one_out(
    sequences: Sequence[np.ndarray],
    keys: Sequence[str],
    max_history: int = 20,
    train_prefixes: bool = True,
    notes: list[str] | None = None,
) -> tuple[Examples, Examples, Examples]:
    """Leave-one-out examples from chronological item sequences (internal ids).

    A user with n items gives: test = (items[:n-1] -> items[n-1]), valid = (items[:n-2] -> items[n-2]),
    train = (items[:t] -> items[t]) for t = 1 .. n-3 (or only the longest prefix when
    ``train_prefixes`` is False). Histories keep the last ``max_history`` items. Users with fewer
    than 3 items cannot give all three splits: with 2 items they give a test example only, with
    fewer they are skipped; both are counted in ``notes``.
    """
    if max_history < 1:
        raise ValueError(f"max_history must be >= 1, got {max_history}")
    tr_h, tr_t, tr_k, va_h, va_t, va_k, te_h, te_t, te_k = ([] for _ in range(9))
    short2 = short1 = 0
    for seq, key in zip(sequences, keys, strict=True):
        seq = np.asarray(seq, dtype=np.int64)
        n = len(seq)
        if n < 2:
            short1 += 1
            continue
        te_h.append(seq[max(0, n - 1 - max_history): n - 1])
        te_t.append(seq[n - 1: n])
        te_k.append(key)
        if n < 3:
            short2 += 1
            continue
        va_h.append(seq[max(0, n - 2 - max_history): n - 2])
        va_t.append(seq[n - 2: n - 1])
        va_k.append(key)
        positions = range(1, n - 2) if train_prefixes else range(max(1, n - 3), n - 2)
        for t in positions:
            tr_h.append(seq[max(0, t - max_history): t])
            tr_t.append(seq[t: t + 1])
            tr_k.append(key)
    if notes is not None:
        if short1:
            notes.append(f"{short1} users with fewer than 2 items skipped (no history/target pair)")
        if short2:
            notes.append(f"{short2} users with exactly 2 items: test example only (no valid/train)")
    mk = lambda h, t, k: Examples(kind="history", targets=t, histories=h, keys=k)  # noqa: E731
    return mk(tr_h, tr_t, tr_k), mk(va_h, va_t, va_k), mk(te_h, te_t, te_k)


def check_no_query_leakage(*splits: Examples) -> None:
    """Raise if a query key occurs in two of the given splits (used by tests and loaders)."""
    seen: dict[str, int] = {}
    for s_i, ex in enumerate(splits):
        keys = ex.keys if ex.keys is not None else ex.queries
        if keys is None:
            raise DataError("query leakage check needs query keys")
        for k in set(keys):
            if k in seen and seen[k] != s_i:
                raise DataError(f"query {k!r} occurs in split {seen[k]} and split {s_i}")
            seen[k] = s_i


def seen_target_coverage(train: Examples, test: Examples) -> dict[str, float]:
    """How much of ``test`` a model that only learns identifiers from ``train`` targets can reach.

    ``positives``: share of test (example, item) pairs whose item is a target somewhere in train;
    ``examples``: share of test examples with at least one such positive. A generative retriever
    trained on (source, item) pairs has never been taught to emit an unseen item's identifier.
    """
    _, train_items = train.pairs()
    ex, items = test.pairs()
    if not len(items):
        raise DataError("seen_target_coverage: the test split has no (example, item) pairs")
    seen = np.isin(items, np.unique(train_items))
    per_example = np.bincount(ex, weights=seen, minlength=len(test)) > 0
    return {"positives": float(seen.mean()), "examples": float(per_example.mean())}
