"""Preference pairs (source, chosen item, rejected item) for DPO.

Two sources of pairs:

- :func:`graded_pairs`: human judgments. For one query, a target with a higher grade is preferred
  over a target with a lower grade (by more than ``min_gap``), and every target over every judged
  negative (Home Depot: relevance >= 2.67 vs < 2.0). ``Examples.target_grades`` / ``Examples.negatives``.
- :func:`mined_pairs`: hard negatives from the SFT model's own constrained beams. For each (source,
  target) the rejected item is a beam result that is not a target, preferring the one that shares the
  longest identifier prefix with the target (the model confuses near siblings), then the higher beam rank.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gr_toolkit.data.types import Examples


@dataclass
class PreferencePairs:
    """Parallel arrays: ``example[p]`` (index into the Examples), ``chosen[p]``, ``rejected[p]`` (item ids)."""

    example: np.ndarray
    chosen: np.ndarray
    rejected: np.ndarray
    source: str = ""

    def __post_init__(self) -> None:
        self.example = np.asarray(self.example, dtype=np.int64)
        self.chosen = np.asarray(self.chosen, dtype=np.int64)
        self.rejected = np.asarray(self.rejected, dtype=np.int64)
        if not (len(self.example) == len(self.chosen) == len(self.rejected)):
            raise ValueError("example, chosen and rejected must have the same length")
        if (self.chosen == self.rejected).any():
            raise ValueError("a preference pair must compare two different items")

    def __len__(self) -> int:
        return len(self.example)

    def concat(self, other: PreferencePairs) -> PreferencePairs:
        return PreferencePairs(np.concatenate([self.example, other.example]), np.concatenate([self.chosen, other.chosen]),
                               np.concatenate([self.rejected, other.rejected]), f"{self.source}+{other.source}")

    def subset(self, idx: np.ndarray) -> PreferencePairs:
        return PreferencePairs(self.example[idx], self.chosen[idx], self.rejected[idx], self.source)


def graded_pairs(examples: Examples, min_gap: float = 0.0, max_per_example: int | None = 16,
                 use_negatives: bool = True) -> PreferencePairs:
    """Pairs from graded judgments; per example at most ``max_per_example`` pairs, largest grade gaps first.

    Judged negatives count as grade ``-inf`` (below every target). Examples with neither grades nor
    negatives give no pairs. Raises if the examples carry no judgments at all (nothing to prefer).
    """
    if examples.target_grades is None and (examples.negatives is None or not use_negatives):
        raise ValueError("graded_pairs needs Examples.target_grades or Examples.negatives (graded judgments)")
    ex_out, ch_out, rj_out = [], [], []
    for i, targets in enumerate(examples.targets):  # per example: a few items each, not a hot path
        items = np.asarray(targets, dtype=np.int64)
        grades = (np.asarray(examples.target_grades[i], dtype=np.float64) if examples.target_grades is not None
                  else np.zeros(len(items)))
        if len(grades) != len(items):
            raise ValueError(f"example {i}: {len(grades)} grades for {len(items)} targets")
        if use_negatives and examples.negatives is not None and len(examples.negatives[i]):
            neg = np.setdiff1d(np.asarray(examples.negatives[i], dtype=np.int64), items)
            items = np.concatenate([items, neg])
            grades = np.concatenate([grades, np.full(len(neg), -np.inf)])
        if len(items) < 2:
            continue
        with np.errstate(invalid="ignore"):  # -inf - -inf (two negatives) is nan: never a pair
            gap = grades[:, None] - grades[None, :]  # [a, b]: a preferred over b when gap > min_gap
            ok = (gap > min_gap) & (items[:, None] != items[None, :])
        a, b = np.nonzero(ok)
        if not len(a):
            continue
        g = gap[a, b]
        order = np.lexsort((b, a, -np.where(np.isinf(g), np.finfo(np.float64).max, g)))
        if max_per_example is not None:
            order = order[:max_per_example]
        ex_out.append(np.full(len(order), i))
        ch_out.append(items[a[order]])
        rj_out.append(items[b[order]])
    if not ex_out:
        return PreferencePairs(np.zeros(0), np.zeros(0), np.zeros(0), "graded")
    return PreferencePairs(np.concatenate(ex_out), np.concatenate(ch_out), np.concatenate(rj_out), "graded")


def shared_prefix_length(codes: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Length of the common identifier prefix of items ``a`` and ``b`` (elementwise, same shape)."""
    ca, cb = codes[a], codes[b]
    same = (ca == cb) & (ca >= 0)
    return np.cumprod(same, axis=-1).sum(-1)


def pick_hard_negatives(ranked: np.ndarray, chosen: np.ndarray, targets: list[np.ndarray],
                        codes: np.ndarray | None) -> np.ndarray:
    """For each row: the beam item (``ranked [P, K]``, -1 = empty) that is not a target of the row,
    with the longest shared prefix with ``chosen[p]`` (ties: better rank); -1 where none exists."""
    p, k = ranked.shape
    lens = np.array([len(t) for t in targets])
    flat = np.concatenate([np.asarray(t, dtype=np.int64) for t in targets]) if p else np.zeros(0, dtype=np.int64)
    owner = np.repeat(np.arange(p), lens)
    span = int(max(ranked.max(initial=0), flat.max(initial=0), 0)) + 2
    is_target = np.isin(np.arange(p)[:, None] * span + ranked, owner * span + flat)
    usable = (ranked >= 0) & ~is_target
    if codes is not None:
        shared = shared_prefix_length(codes, np.maximum(ranked, 0), np.repeat(chosen[:, None], k, axis=1))
    else:
        shared = np.zeros_like(ranked)
    key = np.where(usable, shared * (k + 1) + (k - np.arange(k))[None, :], -1)
    best = key.argmax(1)
    return np.where(key.max(1) >= 0, ranked[np.arange(p), best], -1)


@torch.no_grad()
def mined_pairs(model: Any, index: Any, featurizer: Any, examples: Examples, beam_size: int = 20,
                batch_size: int = 64, max_examples: int | None = None, seed: int = 0,
                device: torch.device | str | None = None) -> PreferencePairs:
    """Hard negatives from the model's own constrained beam search (one pair per training (source, target))."""
    from gr_toolkit.decoding.beam_search import beam_search

    device = torch.device(device) if device is not None else next(model.parameters()).device
    ex, items = examples.pairs()
    if max_examples is not None and len(ex) > max_examples:
        sel = np.sort(np.random.default_rng(seed).choice(len(ex), max_examples, replace=False))
        ex, items = ex[sel], items[sel]
    model.eval()
    constraint = index.constraint(device)
    rejected = np.full(len(ex), -1, dtype=np.int64)
    codes = getattr(index, "codes", None)
    # Decode each distinct source once; pairs of the same source share its beams.
    uniq, inverse = np.unique(ex, return_inverse=True)
    ranked_all = np.full((len(uniq), beam_size), -1, dtype=np.int64)
    for s in range(0, len(uniq), batch_size):
        batch = featurizer.batch(examples, uniq[s:s + batch_size]).to(device)
        out = beam_search(model, constraint, batch, beam_size)
        ranked_all[s:s + batch_size] = index.rank(out, beam_size).items.cpu().numpy()
    ranked = ranked_all[inverse]
    rejected = pick_hard_negatives(ranked, items, [examples.targets[i] for i in ex], codes)
    keep = rejected >= 0
    return PreferencePairs(ex[keep], items[keep], rejected[keep], "mined")
