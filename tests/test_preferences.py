"""Preference pairs: graded judgments (hand-made case) and hard-negative picking from beams."""

from __future__ import annotations

import numpy as np
import pytest

from gr_toolkit.data.types import Examples
from gr_toolkit.training.preferences import (
    PreferencePairs,
    graded_pairs,
    pick_hard_negatives,
    shared_prefix_length,
)


def _set(pairs: PreferencePairs) -> set[tuple[int, int, int]]:
    return set(zip(pairs.example.tolist(), pairs.chosen.tolist(), pairs.rejected.tolist(), strict=True))


def test_graded_pairs_hand_case():
    ex = Examples(
        "query",
        targets=[np.array([10, 11, 12]), np.array([20]), np.array([30, 31])],
        queries=["drill", "paint", "hose"],
        target_grades=[np.array([3.0, 2.67, 3.0]), np.array([2.67]), np.array([2.67, 2.67])],
        negatives=[np.array([13]), np.array([]), np.array([32, 30])],  # 30 is also a target: not a negative
    )
    pairs = graded_pairs(ex, min_gap=0.0, max_per_example=None)
    expected = {
        # query 0: 10 and 12 (3.0) over 11 (2.67); every target over the judged negative 13
        (0, 10, 11), (0, 12, 11), (0, 10, 13), (0, 11, 13), (0, 12, 13),
        # query 1: one target and no negative -> nothing
        # query 2: equal grades give no pair; both targets over negative 32
        (2, 30, 32), (2, 31, 32),
    }
    assert _set(pairs) == expected
    # the cap keeps the largest grade gaps first (target-over-negative pairs, gap = inf)
    capped = graded_pairs(ex, max_per_example=2)
    assert _set(capped.subset(np.flatnonzero(capped.example == 0))) == {(0, 10, 13), (0, 11, 13)}
    # a minimum gap removes the 3.0-vs-2.67 pairs
    assert not {(0, 10, 11), (0, 12, 11)} & _set(graded_pairs(ex, min_gap=0.5, max_per_example=None))


def test_graded_pairs_need_judgments():
    ex = Examples("query", targets=[np.array([1])], queries=["q"])
    with pytest.raises(ValueError, match="target_grades"):
        graded_pairs(ex)


def test_preference_pairs_reject_identical_items():
    with pytest.raises(ValueError, match="different items"):
        PreferencePairs(np.array([0]), np.array([3]), np.array([3]))


def test_hard_negatives_prefer_shared_prefix_then_rank():
    codes = np.array([[0, 4], [0, 5], [1, 6], [1, 7], [0, 8]])
    assert shared_prefix_length(codes, np.array([0, 0, 2]), np.array([1, 2, 2])).tolist() == [1, 0, 2]
    ranked = np.array([
        [2, 0, 1, 4],   # target 0: item 2 ranks first but shares no prefix; 1 and 4 share "0" -> 1 (better rank)
        [3, -1, -1, -1],  # target 2: only 3 is there (shares "1")
        [0, -1, -1, -1],  # target 0: only the target itself -> no negative
    ])
    neg = pick_hard_negatives(ranked, np.array([0, 2, 0]), [np.array([0]), np.array([2]), np.array([0])], codes)
    assert neg.tolist() == [1, 3, -1]
    # without codes: the best-ranked non-target
    neg = pick_hard_negatives(ranked, np.array([0, 2, 0]), [np.array([0]), np.array([2]), np.array([0])], None)
    assert neg.tolist() == [2, 3, -1]
