"""Ranking metrics on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gr_toolkit.evaluation.metrics import evaluate_rankings, hit_matrix, recall_at_k


def t(*items):
    return np.array(items, dtype=np.int64)


def test_single_target_hand_values():
    # Target 7 at rank 3: recall@1 = 0, recall@5 = 1, ndcg@5 = 1/log2(4) = 0.5, mrr = 1/3.
    r = evaluate_rankings(np.array([[1, 2, 7, 4, 5]]), [t(7)], ks=[1, 5])["all"]
    assert r["recall@1"] == 0.0 and r["hr@1"] == 0.0
    assert r["recall@5"] == 1.0 and r["hr@5"] == 1.0
    assert r["ndcg@5"] == pytest.approx(0.5)
    assert r["mrr"] == pytest.approx(1 / 3)
    assert r["n"] == 1


def test_multi_target_recall_and_ndcg_ideal_over_min_targets_k():
    # Targets {1, 2, 3}; ranking hits 1 at rank 1 and 3 at rank 4.
    ranked = np.array([[1, 9, 8, 3, 7]])
    r = evaluate_rankings(ranked, [t(1, 2, 3)], ks=[2, 5])["all"]
    assert r["recall@2"] == pytest.approx(1 / 3)
    assert r["recall@5"] == pytest.approx(2 / 3)
    assert r["hr@2"] == 1.0
    # ndcg@2: dcg = 1, ideal over min(3, 2) = 2 slots: 1 + 1/log2(3).
    assert r["ndcg@2"] == pytest.approx(1 / (1 + 1 / math.log2(3)))
    # ndcg@5: dcg = 1 + 1/log2(5); ideal over 3 slots.
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert r["ndcg@5"] == pytest.approx((1 + 1 / math.log2(5)) / ideal)
    assert r["mrr"] == 1.0


def test_duplicates_in_ranked_list_count_once():
    ranked = np.array([[5, 5, 5, 6]])
    hits = hit_matrix(ranked, [t(5, 6)])
    assert hits.tolist() == [[True, False, False, True]]
    r = evaluate_rankings(ranked, [t(5, 6)], ks=[3, 4])["all"]
    assert r["recall@3"] == pytest.approx(0.5)  # not 1.5
    assert r["recall@4"] == pytest.approx(1.0)


def test_minus_one_padding_never_hits():
    ranked = np.array([[-1, -1, 3], [-1, -1, -1]])
    r = evaluate_rankings(ranked, [t(3), t(0)], ks=[2, 3])["all"]
    assert r["recall@2"] == 0.0
    assert r["recall@3"] == pytest.approx(0.5)  # example 0 hits at rank 3, example 1 never
    assert r["mrr"] == pytest.approx((1 / 3 + 0) / 2)


def test_k_larger_than_list_uses_whole_list():
    r = evaluate_rankings(np.array([[4, 2]]), [t(2)], ks=[10])["all"]
    assert r["recall@10"] == 1.0
    assert r["ndcg@10"] == pytest.approx(1 / math.log2(3))


def test_per_bucket_means_and_counts():
    ranked = np.array([[1, 2], [3, 4], [5, 6]])
    targets = [t(1), t(9), t(6)]
    buckets = np.array(["head", "tail", "tail"])
    rep = evaluate_rankings(ranked, targets, ks=[1, 2], buckets=buckets)
    assert rep["all"]["n"] == 3 and rep["head"]["n"] == 1 and rep["tail"]["n"] == 2 and rep["torso"]["n"] == 0
    assert rep["head"]["recall@1"] == 1.0
    assert rep["tail"]["recall@2"] == pytest.approx(0.5)
    assert rep["all"]["recall@2"] == pytest.approx(2 / 3)
    assert math.isnan(rep["torso"]["recall@1"])
    assert rep["tail"]["mrr"] == pytest.approx((0 + 0.5) / 2)


def test_recall_at_k_helper():
    assert recall_at_k(np.array([[1, 2, 3]]), [t(3, 4)], 3) == pytest.approx(0.5)


def test_empty_targets_raise():
    with pytest.raises(ValueError, match="no targets"):
        evaluate_rankings(np.array([[1, 2]]), [t()], ks=[1])


def test_length_mismatch_and_bad_k_raise():
    with pytest.raises(ValueError, match="ranked lists"):
        evaluate_rankings(np.array([[1, 2]]), [t(1), t(2)], ks=[1])
    with pytest.raises(ValueError, match="positive"):
        evaluate_rankings(np.array([[1, 2]]), [t(1)], ks=[0])
