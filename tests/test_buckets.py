"""Head/torso/tail buckets by training traffic and the named proxies."""

from __future__ import annotations

import numpy as np
import pytest

from gr_toolkit.data.buckets import assign_buckets, query_traffic, traffic_table
from gr_toolkit.data.types import Catalog, DataError, Dataset, Examples
from tests.conftest import real_data


def _query_dataset(train_q, train_w, test_q, bucketing="traffic"):
    cat = Catalog("t", ids=[f"i{i}" for i in range(5)], fields={"title": [f"item {i}" for i in range(5)]})
    tr = Examples(kind="query", targets=[np.array([i % 5]) for i in range(len(train_q))], queries=list(train_q),
                  weights=np.asarray(train_w, dtype=float), keys=list(train_q))
    te = Examples(kind="query", targets=[np.array([0]) for _ in test_q], queries=list(test_q), keys=list(test_q))
    return Dataset("t", cat, tr, te.subset([]), te, protocol="query-split", bucketing=bucketing)


def test_traffic_buckets_hand_case():
    # Traffic 50/20/10/10/5/5 (total 100). Shares before each: 0, .5, .7, .8, .9, .95
    # -> head: a (crosses 50%); torso: b, c (up to 80%); tail: d, e, f and unseen queries.
    d = _query_dataset(list("abcdef"), [50, 20, 10, 10, 5, 5], ["a", "b", "c", "d", "f", "zzz"])
    assert assign_buckets(d, d.test).tolist() == ["head", "torso", "torso", "tail", "tail", "tail"]


def test_head_includes_the_query_that_crosses_the_line():
    # 30/30/40 sorted = c 40, a 30, b 30 (tie broken by name): shares before 0, .4, .7
    d = _query_dataset(["a", "b", "c"], [30, 30, 40], ["c", "a", "b"])
    assert assign_buckets(d, d.test).tolist() == ["head", "head", "torso"]


def test_traffic_sums_repeated_training_rows():
    # Two (query, item) rows for "a" (Best Buy style): 30 + 30 = 60 > 40 of "b".
    d = _query_dataset(["a", "a", "b"], [30, 30, 40], ["a", "b"])
    tq = query_traffic(d.train)
    assert tq.index.tolist() == ["a", "b"] and tq.tolist() == [60.0, 40.0]
    assert assign_buckets(d, d.test).tolist() == ["head", "torso"]


def test_shares_are_configurable():
    d = _query_dataset(list("abcdef"), [50, 20, 10, 10, 5, 5], list("abcdef"))
    assert assign_buckets(d, d.test, head_share=0.75, torso_share=0.2).tolist() == [
        "head", "head", "head", "torso", "torso", "tail"]


def test_target_popularity_proxy_hand_case():
    cat = Catalog("t", ids=[f"i{i}" for i in range(4)])
    # train target counts: item0 x5, item1 x3, item2 x2, item3 never -> shares before: 0, .5, .8
    targets = [np.array([0])] * 5 + [np.array([1])] * 3 + [np.array([2])] * 2
    tr = Examples(kind="history", targets=targets, histories=[np.array([3])] * 10)
    te = Examples(kind="history", targets=[np.array([0]), np.array([1]), np.array([2]), np.array([3]),
                                           np.array([3, 1])], histories=[np.array([0])] * 5)
    d = Dataset("t", cat, tr, te.subset([]), te, protocol="leave-one-out", bucketing="proxy:target-popularity")
    # multi-target example takes its most popular target's bucket
    assert assign_buckets(d, te).tolist() == ["head", "torso", "tail", "tail", "torso"]


def test_query_length_proxy():
    # Length key = words, then characters. Train: four 1-word (key 10001), two "dd ee"-like (20005),
    # two 3-word (30008), two 4-word (40011) queries -> shares before: 0, .4, .6, .8
    # -> head, head, torso, tail.
    train_q = ["a", "b", "c", "d", "dd ee", "ff gg", "hh ii jj", "kk ll mm", "nn oo pp qq", "rr ss tt uu"]
    test_q = ["x", "xx yy", "zz zz zz", "ab cd ef gh", "a b c d", "a b c d e f g"]
    d = _query_dataset(train_q, [1] * 10, test_q, bucketing="proxy:query-length")
    # "a b c d" (4 words, 7 chars) is shorter than every 4-word training query: it takes the bucket of
    # the next shorter seen length (3 words, torso); longer than all seen -> the longest's bucket.
    assert assign_buckets(d, d.test).tolist() == ["head", "head", "torso", "tail", "torso", "tail"]


def test_unknown_bucketing_and_kind_errors():
    d = _query_dataset(["a"], [1], ["a"], bucketing="proxy:moon-phase")
    with pytest.raises(DataError, match="moon-phase"):
        assign_buckets(d, d.test)
    h = Examples(kind="history", targets=[np.array([0])], histories=[np.array([1])])
    d2 = _query_dataset(["a"], [1], ["a"])
    with pytest.raises(DataError, match="query examples"):
        assign_buckets(d2, h)


def test_traffic_table_on_synthetic(tiny_query_dataset):
    t = traffic_table(tiny_query_dataset)
    assert set(t["split"]) == {"train", "valid", "test"}
    train = t[t["split"] == "train"].set_index("bucket")
    assert train["share"].sum() == pytest.approx(1.0)
    assert 0.5 <= train.loc["head", "share"] < 0.5 + 0.2
    assert train.loc["head", "queries"] < train.loc["torso", "queries"] < train.loc["tail", "queries"]
    n_test = len(tiny_query_dataset.test)
    assert t[t["split"] == "test"]["examples"].sum() == n_test


@real_data
def test_bestbuy_has_27_head_queries(real_data_dir):
    from gr_toolkit.data.loaders import load_dataset

    d = load_dataset("bestbuy", data_dir=real_data_dir)
    t = traffic_table(d).set_index(["split", "bucket"])
    assert t.loc[("train", "head"), "queries"] == 27
    tq = query_traffic(d.train)
    assert tq.index[0] == "gears of war 3"
    b = assign_buckets(d, d.test)
    assert set(np.asarray(d.test.queries)[b == "head"]) <= set(tq.index[:27])
