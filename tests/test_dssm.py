import numpy as np
import pytest

from gr_toolkit.baselines.dssm import DSSMConfig, train_dssm
from gr_toolkit.baselines.hashing import hash_texts
from gr_toolkit.baselines.popularity import PopularityRetriever
from gr_toolkit.baselines.topk import exact_topk, topk
from gr_toolkit.evaluation.metrics import recall_at_k


@pytest.fixture(scope="module")
def trained(tiny_query_dataset):
    cfg = DSSMConfig(dim=32, n_buckets=1 << 14, num_negatives=64, batch_size=128, epochs=4, patience=0,
                     device="cpu", verbose=False)
    return train_dssm(tiny_query_dataset, cfg, log=None)


def test_dssm_learns_beyond_popularity(trained, tiny_query_dataset):
    ds = tiny_query_dataset
    items, scores = trained.rank(ds.test.queries, k=10)
    assert items.shape == (len(ds.test), 10) and (items >= 0).all() and (items < len(ds.catalog)).all()
    assert (np.diff(scores, axis=1) <= 1e-6).all()
    pop, _ = PopularityRetriever(ds).rank(ds.test, k=10)
    r_dssm = recall_at_k(items, ds.test.targets, 10)
    assert r_dssm > recall_at_k(pop, ds.test.targets, 10) + 0.1
    assert trained.best_epoch >= 1 and len(trained.history) == 4


def test_item_vectors_are_normalised(trained, tiny_query_dataset):
    v = trained.item_cf_vectors()
    assert v.shape == (len(tiny_query_dataset.catalog), 32)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)


def test_faiss_topk_matches_exact():
    rng = np.random.default_rng(0)
    items = rng.normal(size=(500, 16)).astype(np.float32)
    q = rng.normal(size=(20, 16)).astype(np.float32)
    ei, es = exact_topk(q, items, 10)
    fi, fs = topk(q, items, 10, method="faiss-flat")
    np.testing.assert_array_equal(ei, fi)
    np.testing.assert_allclose(es, fs, rtol=1e-4, atol=1e-4)
    # brute force check of the exact path
    np.testing.assert_array_equal(ei[:, 0], (q @ items.T).argmax(1))
    ii, _ = topk(q, items, 10, method="faiss-ivf", nlist=8, nprobe=8)  # all cells probed: exact
    np.testing.assert_array_equal(ii, ei)
    with pytest.raises(ValueError, match="unknown top-K method"):
        topk(q, items, 5, method="hnsw")


def test_hashed_bags_take_and_typo_overlap():
    bags = hash_texts(["cordless drill", "cordles drill", "", "paint"], 1 << 16)
    sub = bags.take(np.array([3, 0]))
    assert len(sub) == 2
    np.testing.assert_array_equal(sub.ids[sub.offsets[1]:sub.offsets[2]], bags.ids[bags.offsets[0]:bags.offsets[1]])
    a = set(bags.ids[bags.offsets[0]:bags.offsets[1]].tolist())
    b = set(bags.ids[bags.offsets[1]:bags.offsets[2]].tolist())
    assert len(a & b) / len(a | b) > 0.5  # a typo keeps most character trigrams
    assert bags.offsets[3] == bags.offsets[2]  # empty text: empty bag


def test_dssm_rejects_history_data(tiny_history_dataset):
    from gr_toolkit.data.types import DataError

    with pytest.raises(DataError, match="SASRec"):
        train_dssm(tiny_history_dataset, DSSMConfig(epochs=1))
