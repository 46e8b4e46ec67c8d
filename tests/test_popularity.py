import numpy as np

from gr_toolkit.baselines.popularity import PopularityRetriever, item_popularity
from gr_toolkit.data.types import Catalog, Dataset, Examples


def _query_ds():
    cat = Catalog("t", ["a", "b", "c", "d"], fields={"title": ["a", "b", "c", "d"]})
    train = Examples("query", targets=[np.array([1]), np.array([2, 1]), np.array([3])], queries=["x", "y", "z"],
                     weights=np.array([1.0, 2.0, 5.0]))
    ev = Examples("query", targets=[np.array([0])], queries=["q"])
    return Dataset("t", cat, train, ev, ev, "query-split")


def test_weighted_counts_and_ranking():
    ds = _query_ds()
    np.testing.assert_allclose(item_popularity(ds), [0, 3, 2, 5])
    items, scores = PopularityRetriever(ds).rank(ds.test, k=3)
    assert items.tolist() == [[3, 1, 2]]
    assert scores.tolist() == [[5, 3, 2]]


def test_history_counts_and_exclusion():
    cat = Catalog("h", [str(i) for i in range(5)])
    train = Examples("history", targets=[np.array([1]), np.array([1]), np.array([2])],
                     histories=[np.array([0]), np.array([0, 3]), np.array([4])])
    test = Examples("history", targets=[np.array([2]), np.array([4])], histories=[np.array([1, 0]), np.array([2])])
    ds = Dataset("h", cat, train, test, test, "leave-one-out")
    # targets: 1 x2, 2 x1 ; histories: 0 x2, 3 x1, 4 x1
    np.testing.assert_allclose(item_popularity(ds), [2, 2, 1, 1, 1])
    pop = PopularityRetriever(ds)
    items, _ = pop.rank(test, k=3)
    assert items.tolist() == [[0, 1, 2], [0, 1, 2]]
    items, _ = pop.rank(test, k=3, exclude_history=True)
    assert items.tolist() == [[2, 3, 4], [0, 1, 3]]


def test_prefix_examples_count_each_interaction_once():
    cat = Catalog("h", [str(i) for i in range(4)])
    # user u has sequence 0 1 2 emitted as two prefix examples; user v has 3 0
    train = Examples("history", targets=[np.array([1]), np.array([2]), np.array([0])],
                     histories=[np.array([0]), np.array([0, 1]), np.array([3])], keys=["u", "u", "v"])
    ds = Dataset("h", cat, train, train, train, "leave-one-out")
    np.testing.assert_allclose(item_popularity(ds), [2, 1, 1, 1])
