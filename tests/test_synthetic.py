"""The synthetic catalog: deterministic, shop-like, and learnable (a simple model beats popularity)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from gr_toolkit.data.loaders import load_dataset
from gr_toolkit.data.synthetic import make_synthetic
from gr_toolkit.evaluation.metrics import evaluate_rankings


def _same(a, b) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_deterministic_by_seed(tiny_query_dataset):
    again = make_synthetic(seed=0, n_items=300, n_queries=800, n_events=5000, kind="query")
    d = tiny_query_dataset
    assert again.catalog.ids == d.catalog.ids
    assert again.catalog.fields["title"] == d.catalog.fields["title"]
    assert again.train.queries == d.train.queries
    assert _same(again.train.targets, d.train.targets)
    assert np.array_equal(again.test.weights, d.test.weights)
    other = make_synthetic(seed=1, n_items=300, n_queries=800, n_events=5000, kind="query")
    assert other.catalog.fields["title"] != d.catalog.fields["title"]


def test_catalog_has_attributes_and_titles_from_them(tiny_query_dataset):
    cat = tiny_query_dataset.catalog
    for a in ("category", "type", "brand", "color", "material", "size"):
        assert len(cat.attributes[a]) == len(cat)
    for i in range(0, len(cat), 37):
        title = cat.fields["title"][i].lower()
        assert cat.attributes["type"][i] in title
        assert cat.attributes["brand"][i] in title
        assert cat.attributes["color"][i] in title
    assert len(set(cat.fields["title"])) == len(cat)  # model numbers make titles unique


def test_query_examples_valid_and_targets_share_attributes(tiny_query_dataset):
    d = tiny_query_dataset
    types = np.array(d.catalog.attributes["type"])
    for ex in (d.train, d.valid, d.test):
        assert len(ex) > 0 and ex.kind == "query"
        assert len(set(ex.queries)) == len(ex.queries)  # one example per distinct query per split
        for tg in ex.targets:
            assert len(tg) >= 1 and tg.min() >= 0 and tg.max() < len(d.catalog)
            assert len(set(types[tg])) == 1  # every relevant item is the same product type
        for tg, ng in zip(ex.targets, ex.negatives, strict=True):
            assert not set(tg) & set(ng)  # hard negatives are never relevant
            assert len(ng) == 0 or set(types[ng]) == set(types[tg])
        assert (ex.weights >= 1).all()


def test_traffic_is_zipf_shaped(tiny_query_dataset):
    w = np.sort(tiny_query_dataset.train.weights)[::-1]
    share = np.cumsum(w) / w.sum()
    n_head = int(np.searchsorted(share, 0.5)) + 1
    assert n_head < 0.1 * len(w)  # a few queries carry half the traffic
    assert (w == 1).mean() > 0.3  # and a long tail of one-off queries


def test_query_split_option_has_no_leakage():
    d = make_synthetic(seed=3, n_items=200, n_queries=500, n_events=3000, split="query")
    assert d.protocol == "query-split"
    tr, va, te = set(d.train.queries), set(d.valid.queries), set(d.test.queries)
    assert not (tr & va) and not (tr & te) and not (va & te)


def _tokens(s: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", s.lower()))


def test_query_kind_is_learnable_overlap_beats_popularity():
    d = make_synthetic(seed=0, n_items=600, n_queries=1500, n_events=10000)
    titles = [_tokens(t) for t in d.catalog.fields["title"]]
    df: dict[str, int] = {}
    for t in titles:
        for w in t:
            df[w] = df.get(w, 0) + 1
    idf = {w: np.log(len(titles) / c) for w, c in df.items()}
    # Token overlap weighted by idf over titles (a BM25-like scorer without length normalisation).
    vocab = {w: i for i, w in enumerate(df)}
    item_w = np.zeros((len(titles), len(vocab)))
    for i, t in enumerate(titles):
        item_w[i, [vocab[w] for w in t]] = 1.0
    q_w = np.zeros((len(d.test), len(vocab)))
    for i, q in enumerate(d.test.queries):
        for w in _tokens(q):
            if w in vocab:
                q_w[i, vocab[w]] = idf[w]
    ex, items = d.train.pairs()
    pop = np.bincount(items, weights=d.train.weights[ex], minlength=len(d.catalog))
    scores = q_w @ item_w.T + 1e-6 * pop / pop.max()
    overlap = np.argsort(-scores, axis=1)[:, :10]
    popular = np.tile(np.argsort(-pop)[:10], (len(d.test), 1))
    r_overlap = evaluate_rankings(overlap, d.test.targets, ks=[10])["all"]["recall@10"]
    r_pop = evaluate_rankings(popular, d.test.targets, ks=[10])["all"]["recall@10"]
    assert r_overlap > 0.5
    assert r_overlap > r_pop + 0.3


def test_history_kind_is_learnable_category_beats_popularity():
    d = make_synthetic(seed=0, n_items=600, n_users=1500, kind="history")
    cats, ci = np.unique(np.array(d.catalog.attributes["category"]), return_inverse=True)
    _, items = d.train.pairs()
    pop = np.bincount(items, minlength=len(d.catalog)).astype(float)
    pop_n = pop / pop.max()
    # Category co-occurrence: prefer items of the categories the user already bought, then popular ones.
    pref = np.stack([np.bincount(ci[h], minlength=len(cats)) for h in d.test.histories])
    scores = pref[:, ci] + 0.5 * pop_n[None, :]
    ranked = np.argsort(-scores, axis=1)[:, :10]
    popular = np.tile(np.argsort(-pop)[:10], (len(d.test), 1))
    r_cat = evaluate_rankings(ranked, d.test.targets, ks=[10])["all"]["recall@10"]
    r_pop = evaluate_rankings(popular, d.test.targets, ks=[10])["all"]["recall@10"]
    assert r_cat > 1.5 * r_pop and r_cat > r_pop + 0.05


def test_history_kind_leave_one_out(tiny_history_dataset):
    d = tiny_history_dataset
    assert d.protocol == "leave-one-out" and d.kind == "history"
    assert d.bucketing == "proxy:target-popularity"
    assert len(d.valid) == len(d.test) == 300
    # For a user, the valid history + valid target is a prefix of the test history + test target.
    for u in range(0, 300, 29):
        vh, vt = d.valid.histories[u], d.valid.targets[u]
        th = d.test.histories[u]
        assert th[-1] == vt[0]
        prev = th[:-1]  # the items before the valid target, as far as the test history reaches back
        assert len(prev) <= len(vh) and np.array_equal(vh[len(vh) - len(prev):], prev)
    assert max(len(h) for h in d.train.histories) <= 20


def test_registered_names():
    q = load_dataset("synthetic", n_items=100, n_queries=200, n_events=800)
    h = load_dataset("synthetic-seq", n_items=100, n_users=50)
    assert q.kind == "query" and q.name == "synthetic"
    assert h.kind == "history" and h.name == "synthetic-seq"
    assert load_dataset("synthetic", kind="history", n_items=100, n_users=50).kind == "history"


def test_bad_arguments():
    with pytest.raises(ValueError, match="kind"):
        make_synthetic(kind="images")
    with pytest.raises(ValueError, match="n_items"):
        make_synthetic(n_items=5)
