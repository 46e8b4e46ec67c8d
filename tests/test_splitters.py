"""Balanced splitters: exact floor/+1 sizes, quality of the fast splitter, degenerate input."""

from __future__ import annotations

import numpy as np
import pytest

from gr_toolkit.identifiers.splitters import (
    SPLITTERS,
    SplitError,
    balanced_assign,
    balanced_sizes,
    get_splitter,
    repair_sizes,
    within_cluster_ss,
)


def blobs(n: int, d: int = 8, comps: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(comps, d)) * 3
    return (centres[rng.integers(comps, size=n)] + rng.normal(size=(n, d))).astype(np.float32)


def test_balanced_sizes_helper():
    assert balanced_sizes(10, 3).tolist() == [4, 3, 3]
    assert balanced_sizes(9, 3).tolist() == [3, 3, 3]
    assert balanced_sizes(2, 5).tolist() == [1, 1, 0, 0, 0]


@pytest.mark.parametrize("name", ["exact", "fast", "random"])
@pytest.mark.parametrize("n,k", [(103, 8), (64, 8), (17, 16), (9, 2), (5, 5)])
def test_balanced_splitters_give_floor_or_floor_plus_one(name, n, k):
    x = blobs(n)
    labels = get_splitter(name).split(x, k, seed=3)
    assert labels.shape == (n,)
    counts = np.bincount(labels, minlength=k)
    f, r = divmod(n, k)
    assert sorted(counts.tolist()) == sorted(balanced_sizes(n, k).tolist())
    assert int((counts == f + 1).sum()) == r


def test_fast_handles_duplicates_and_keeps_exact_sizes():
    x = np.ones((50, 4), dtype=np.float32)  # every vector identical
    for name in ("fast", "exact"):
        counts = np.bincount(get_splitter(name).split(x, 7, seed=0), minlength=7)
        assert sorted(counts.tolist()) == sorted(balanced_sizes(50, 7).tolist())


def test_fast_is_close_to_exact_on_blobs():
    x = blobs(600, d=8, comps=6, seed=1)
    fast = within_cluster_ss(x, get_splitter("fast").split(x, 6, seed=0))
    exact = within_cluster_ss(x, get_splitter("exact").split(x, 6, seed=0))
    rand = within_cluster_ss(x, get_splitter("random").split(x, 6, seed=0))
    assert fast <= 1.05 * exact
    assert fast < 0.5 * rand  # it actually clusters


def test_fast_is_deterministic_per_seed():
    x = blobs(300)
    s = get_splitter("fast")
    assert np.array_equal(s.split(x, 5, seed=4), s.split(x, 5, seed=4))


def test_balanced_assign_is_optimal_on_a_small_transport_problem():
    # 6 points, 3 clusters of 2: brute force over all balanced assignments.
    import itertools

    rng = np.random.default_rng(0)
    dt = rng.random((3, 6)).astype(np.float32)
    labels, _ = balanced_assign(dt)
    best = min(
        sum(dt[c, i] for i, c in enumerate(lab))
        for lab in itertools.product(range(3), repeat=6)
        if sorted(np.bincount(lab, minlength=3).tolist()) == [2, 2, 2]
    )
    assert np.bincount(labels, minlength=3).tolist() == [2, 2, 2]
    assert dt[labels, np.arange(6)].sum() == pytest.approx(best, rel=1e-5)


def test_repair_reaches_target_sizes_from_any_start():
    rng = np.random.default_rng(0)
    dt = rng.random((4, 103)).astype(np.float32)
    labels = repair_sizes(dt, np.zeros(103, dtype=np.int64), np.array([26, 26, 26, 25]))
    assert np.bincount(labels, minlength=4).tolist() == [26, 26, 26, 25]


def test_kmeans_splitter_is_unbalanced_but_nonempty():
    x = np.concatenate([blobs(90, seed=0), blobs(10, seed=1) + 50])
    labels = get_splitter("kmeans").split(x, 4, seed=0)
    counts = np.bincount(labels)
    assert (counts > 0).all() and counts.sum() == 100
    assert not SPLITTERS.get("kmeans").balanced


@pytest.mark.parametrize("name", ["exact", "fast", "kmeans"])
def test_bad_input_is_a_clear_error(name):
    s = get_splitter(name)
    x = blobs(20)
    with pytest.raises(SplitError, match="cannot split 3 item"):
        s.split(x[:3], 5)
    bad = x.copy()
    bad[4, 2] = np.nan
    with pytest.raises(SplitError, match="NaN"):
        s.split(bad, 4)
    with pytest.raises(SplitError, match="2-d"):
        s.split(x[:, 0], 2)


def test_unknown_splitter_lists_known():
    with pytest.raises(KeyError, match="exact"):
        get_splitter("nope")
