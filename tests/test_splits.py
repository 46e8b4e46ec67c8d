"""Split protocols: leave-one-out targets, seeded query-level splits without leakage."""

from __future__ import annotations

import numpy as np
import pytest

from gr_toolkit.data.splits import carve_validation, check_no_query_leakage, leave_one_out, query_level_split
from gr_toolkit.data.types import DataError, Examples


def test_leave_one_out_hand_case():
    seqs = [np.array([10, 11, 12, 13, 14]), np.array([20, 21]), np.array([30])]
    notes: list[str] = []
    tr, va, te = leave_one_out(seqs, ["a", "b", "c"], max_history=3, notes=notes)
    # user a: test 14 from [11, 12, 13] (last 3), valid 13 from [10, 11, 12], train 11 <- [10], 12 <- [10, 11]
    assert te.keys == ["a", "b"] and va.keys == ["a"]
    assert te.histories[0].tolist() == [11, 12, 13] and te.targets[0].tolist() == [14]
    assert va.histories[0].tolist() == [10, 11, 12] and va.targets[0].tolist() == [13]
    assert [h.tolist() for h in tr.histories] == [[10], [10, 11]]
    assert [t.tolist() for t in tr.targets] == [[11], [12]]
    # user b (2 items): test only; user c (1 item): skipped; both counted.
    assert te.histories[1].tolist() == [20] and te.targets[1].tolist() == [21]
    assert any("fewer than 2" in n for n in notes) and any("exactly 2" in n for n in notes)


def test_leave_one_out_no_target_leaks_into_training():
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 50, rng.integers(3, 30)) for _ in range(40)]
    keys = [f"u{i}" for i in range(40)]
    tr, va, te = leave_one_out(seqs, keys, max_history=20)
    last_train_pos: dict[str, int] = {}
    for k in tr.keys:
        last_train_pos[k] = last_train_pos.get(k, 0) + 1
    for i, (s, k) in enumerate(zip(seqs, keys, strict=True)):
        # training targets are positions 1..n-3 only
        assert last_train_pos.get(k, 0) == len(s) - 3
        assert te.targets[i][0] == s[-1] and va.targets[i][0] == s[-2]
        # neither the valid nor the test target appears as a training target position of this user
        assert len(te.histories[i]) == min(len(s) - 1, 20)


def test_leave_one_out_longest_prefix_only():
    tr, _, _ = leave_one_out([np.arange(6)], ["u"], train_prefixes=False)
    assert [h.tolist() for h in tr.histories] == [[0, 1, 2]] and tr.targets[0].tolist() == [3]


def test_query_level_split_deterministic_and_grouped():
    keys = [f"q{i % 500}" for i in range(3000)]  # each query has 6 rows
    a = query_level_split(keys, seed=0)
    b = query_level_split(list(reversed(keys)), seed=0)[::-1]
    assert (a == b).all()  # independent of row order
    per_q = {}
    for k, s in zip(keys, a, strict=True):
        per_q.setdefault(k, set()).add(s)
    assert all(len(v) == 1 for v in per_q.values())  # a query never straddles splits
    shares = {s: np.mean([next(iter(v)) == s for v in per_q.values()]) for s in ("train", "valid", "test")}
    assert 0.74 < shares["train"] < 0.86 and 0.05 < shares["valid"] < 0.15 and 0.05 < shares["test"] < 0.15
    assert (query_level_split(keys, seed=1) != a).any()


def test_query_level_split_bad_fractions():
    with pytest.raises(ValueError, match="fractions"):
        query_level_split(["a"], fractions=(0.5, 0.5, 0.5))


def test_carve_validation_by_key():
    keys = [f"q{i % 100}" for i in range(1000)]
    m = carve_validation(keys, seed=0, share=0.2)
    by_key = {}
    for k, v in zip(keys, m, strict=True):
        by_key.setdefault(k, set()).add(bool(v))
    assert all(len(v) == 1 for v in by_key.values())
    assert 5 < sum(next(iter(v)) for v in by_key.values()) < 35


def test_check_no_query_leakage():
    a = Examples(kind="query", targets=[np.array([0])], queries=["x"], keys=["x"])
    b = Examples(kind="query", targets=[np.array([1])], queries=["y"], keys=["y"])
    check_no_query_leakage(a, b)
    with pytest.raises(DataError, match="'x'"):
        check_no_query_leakage(a, b, a.subset([0]))


def test_seen_target_coverage_hand_computed():
    from gr_toolkit.data.splits import seen_target_coverage

    train = Examples(kind="query", queries=["a", "b"], targets=[np.array([0, 1]), np.array([1])])
    test = Examples(kind="query", queries=["c", "d", "e"], targets=[np.array([1, 2]), np.array([3]), np.array([0])])
    cov = seen_target_coverage(train, test)
    assert cov == {"positives": 0.5, "examples": 2 / 3}  # items 1 and 0 seen; 2 and 3 never targets
    with pytest.raises(DataError, match="no \\(example, item\\) pairs"):
        seen_target_coverage(train, Examples(kind="query", queries=[], targets=[]))
