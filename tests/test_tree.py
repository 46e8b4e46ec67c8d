"""SEATER balanced-tree identifiers: equal length, <= k children, balanced splits, leaf token = item."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gr_toolkit.artifacts import ArtifactError
from gr_toolkit.data.types import Catalog
from gr_toolkit.identifiers.base import SCHEMES, load_index
from gr_toolkit.identifiers.codes import CodeIndex
from gr_toolkit.identifiers.splitters import SplitError
from gr_toolkit.identifiers.tree import (
    BalancedTreeScheme,
    TreeConfig,
    build_tree,
    children_count,
    internal_centroids,
    tree_depth,
)


def catalog(n: int, name: str = "tiny") -> Catalog:
    return Catalog(name=name, ids=[f"item{i}" for i in range(n)], fields={"title": [f"t{i}" for i in range(n)]})


def vectors(n: int, d: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(5, d)) * 3
    return (centres[rng.integers(5, size=n)] + rng.normal(size=(n, d))).astype(np.float32)


def check_tree(codes, lengths, parent, level, n, k, equal_length=True, sizes=None):
    """The structural contract every tree index must meet."""
    vocab = len(parent)
    # leaf token IS the item; internal tokens are n..M-1
    assert np.array_equal(codes[np.arange(n), lengths - 1], np.arange(n))
    internal_pos = np.arange(codes.shape[1])[None, :] < (lengths - 1)[:, None]
    assert (codes[internal_pos] >= n).all()
    if equal_length:
        assert (lengths == tree_depth(n, k)).all()
    # parents agree with the codes; levels are code positions
    for pos in range(codes.shape[1]):
        rows = lengths > pos
        tok = codes[rows, pos]
        expected_parent = np.full(len(tok), -1) if pos == 0 else codes[rows, pos - 1]
        assert np.array_equal(parent[tok], expected_parent)
        assert (level[tok] == pos).all()
    # every token is used by some code, and every node has at most k children
    used = np.zeros(vocab, dtype=bool)
    used[codes[codes >= 0]] = True
    assert used.all()
    children = np.bincount(parent + 1, minlength=vocab + 1)
    assert children.max() <= k
    # unique identifiers
    assert len(np.unique(np.concatenate([codes, lengths[:, None]], 1), axis=0)) == n
    if sizes is not None:  # siblings differ by at most one item: floor/+1 split sizes
        for p in np.unique(parent):
            sib = sizes[parent == p]
            assert sib.max() - sib.min() <= 1, (p, sib)


@pytest.mark.parametrize("n,k", [(1, 4), (4, 4), (5, 4), (70, 8), (64, 8), (65, 8), (3, 2), (200, 3), (257, 16)])
@pytest.mark.parametrize("layout", ["compact", "paper"])
def test_balanced_tree_contract(n, k, layout):
    t = build_tree(vectors(n), n, TreeConfig(k=k, layout=layout, exact_below=50))
    check_tree(t.codes, t.lengths, t.token_parent, t.token_level, n, k, sizes=t.token_size)
    assert t.stats["depth"] == tree_depth(n, k)
    if layout == "compact" and k >= 3:
        assert t.stats["single_child_nodes"] == 0


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 400), k=st.integers(2, 9), layout=st.sampled_from(["compact", "paper"]))
def test_balanced_tree_contract_random_shapes(n, k, layout):
    t = build_tree(None, n, TreeConfig(k=k, layout=layout, splitter="random"))
    check_tree(t.codes, t.lengths, t.token_parent, t.token_level, n, k, sizes=t.token_size)
    if layout == "compact" and k >= 3:  # the compact layout never needs single-child padding
        assert t.stats["single_child_nodes"] == 0


def test_depth_and_children_counts():
    assert [tree_depth(n, 8) for n in (1, 8, 9, 64, 65, 512, 513)] == [1, 1, 2, 2, 3, 3, 4]
    # 70 items, k=8, depth 3: compact gives 2 top children of 35, each 5 leaf-parents of 7
    assert children_count(70, 3, 8, "compact") == 2
    assert children_count(35, 2, 8, "compact") == 5
    assert children_count(70, 3, 8, "paper") == 8
    t = build_tree(vectors(70), 70, TreeConfig(k=8))
    assert t.vocab_size == 70 + 2 + 10
    assert sorted(t.token_size[t.token_parent == -1].tolist()) == [35, 35]


def test_paper_layout_splits_k_ways_and_pads_with_chains():
    t = build_tree(vectors(70), 70, TreeConfig(k=8, layout="paper", exact_below=100))
    assert sorted(t.token_size[t.token_parent == -1].tolist()) == [8, 8, 9, 9, 9, 9, 9, 9]
    assert t.stats["single_child_nodes"] > 0  # groups of 8 are padded to the common depth


def test_hybrid_uses_exact_below_threshold_and_fast_above():
    t = build_tree(vectors(600), 600, TreeConfig(k=4, exact_below=100))
    assert t.stats["splits"].get("exact", 0) > 0 and t.stats["splits"].get("fast", 0) > 0
    t2 = build_tree(vectors(600), 600, TreeConfig(k=4, exact_below=0))
    assert "exact" not in t2.stats["splits"]


def test_tree_groups_similar_items():
    # Two far-apart blobs of 32 items each, k=2: the root split separates them exactly.
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(32, 4)), rng.normal(size=(32, 4)) + 40]).astype(np.float32)
    t = build_tree(x, 64, TreeConfig(k=2, exact_below=0))
    top = t.codes[:, 0]
    assert len(set(top[:32])) == 1 and len(set(top[32:])) == 1 and top[0] != top[32]


def test_scheme_builds_code_index_with_centroids_and_decodes_from_root():
    n = 150
    x = vectors(n)
    idx = SCHEMES.get("seater")(TreeConfig(k=5)).build(catalog(n), x)
    assert isinstance(idx, CodeIndex) and idx.leaf_is_item and not idx.variable_length
    check_tree(idx.codes, idx.lengths, idx.token_parent, idx.token_level, n, 5, sizes=idx.extras["token_size"])
    cents = idx.extras["internal_centroids"]
    assert cents.shape == (idx.vocab_size - n, x.shape[1])
    top = int(idx.codes[0, 0])
    members = idx.codes[:, 0] == top
    np.testing.assert_allclose(cents[top - n], x[members].mean(0), rtol=1e-5, atol=1e-5)
    assert idx.meta_extra["depth"] == tree_depth(n, 5)
    # the decoding constraint starts with exactly the root's children
    con = idx.constraint()
    toks, valid = con.candidates(con.start(1))
    assert set(toks[valid].tolist()) == set(np.flatnonzero(idx.token_parent == -1).tolist())


def test_save_load_round_trip_and_corruption(tmp_path):
    n = 90
    cat = catalog(n)
    idx = BalancedTreeScheme(TreeConfig(k=4)).build(cat, vectors(n))
    out = idx.save(tmp_path / "idx")
    back = load_index(out, cat)
    assert isinstance(back, CodeIndex) and back.scheme == "seater" and back.leaf_is_item
    for name in ("codes", "lengths", "token_parent", "token_level"):
        assert np.array_equal(getattr(back, name), getattr(idx, name))
    for name, arr in idx.extras.items():
        assert np.array_equal(back.extras[name], arr)
    assert back.config == idx.config and back.meta_extra["depth"] == idx.meta_extra["depth"]
    # a different catalog is refused
    with pytest.raises(ArtifactError, match="fingerprint"):
        load_index(out, Catalog("x", [f"other{i}" for i in range(n)]))
    # a modified array file is refused
    codes = np.load(out / "codes.npy")
    codes[0, 0] = codes[1, 0]
    np.save(out / "codes.npy", codes)
    with pytest.raises(ArtifactError, match="checksum"):
        load_index(out, cat)


def test_imbalanced_ablation_has_variable_length_codes_ending_in_eos():
    rng = np.random.default_rng(0)
    # uneven blobs make plain k-means produce uneven clusters
    x = np.concatenate([rng.normal(size=(200, 4)), rng.normal(size=(20, 4)) + 30]).astype(np.float32)
    n = len(x)
    idx = SCHEMES.get("seater-imbalanced")().build(catalog(n), x)
    check_tree(idx.codes, idx.lengths, idx.token_parent, idx.token_level, n, 8, equal_length=False)
    assert idx.variable_length
    targets = idx.decoder_targets(np.arange(n))
    assert (targets[np.arange(n), torch_lengths(idx)] == idx.eos_id).all()


def torch_lengths(idx):
    import torch

    return torch.from_numpy(idx.lengths)


def test_imbalanced_ablation_survives_duplicate_vectors():
    x = np.zeros((40, 3), dtype=np.float32)
    idx = SCHEMES.get("seater-imbalanced")().build(catalog(40), x)
    assert idx.meta_extra["splits"].get("fallback_random", 0) >= 1
    check_tree(idx.codes, idx.lengths, idx.token_parent, idx.token_level, 40, 8, equal_length=False)


def test_balanced_tree_on_duplicate_vectors_is_still_balanced():
    x = np.ones((100, 3), dtype=np.float32)
    t = build_tree(x, 100, TreeConfig(k=4, exact_below=0))
    check_tree(t.codes, t.lengths, t.token_parent, t.token_level, 100, 4, sizes=t.token_size)


def test_random_tree_ignores_vectors_and_has_the_seater_shape():
    n = 100
    rnd = SCHEMES.get("seater-random")().build(catalog(n), None)
    ref = SCHEMES.get("seater")().build(catalog(n), vectors(n))
    assert rnd.vocab_size == ref.vocab_size and rnd.codes.shape == ref.codes.shape
    check_tree(rnd.codes, rnd.lengths, rnd.token_parent, rnd.token_level, n, 8, sizes=rnd.extras["token_size"])


def test_atomic_and_random_codes():
    n = 50
    atomic = SCHEMES.get("atomic")().build(catalog(n), None)
    assert atomic.codes[:, 0].tolist() == list(range(n)) and atomic.vocab_size == n and atomic.leaf_is_item
    from gr_toolkit.identifiers.ablations import RandomCodesConfig

    rc = SCHEMES.get("random")(RandomCodesConfig(levels=2, codebook_size=8, seed=1)).build(catalog(n), None)
    assert rc.codes.shape == (n, 2) and rc.vocab_size == 16
    assert (rc.codes[:, 0] < 8).all() and (rc.codes[:, 1] >= 8).all()
    assert len(np.unique(rc.codes, axis=0)) == n
    with pytest.raises(ValueError, match="do not fit"):
        SCHEMES.get("random")(RandomCodesConfig(levels=1, codebook_size=8)).build(catalog(n), None)


def test_bad_vectors_are_clear_errors():
    scheme = BalancedTreeScheme(TreeConfig(k=4))
    with pytest.raises(ValueError, match="needs item vectors"):
        scheme.build(catalog(10), None)
    with pytest.raises(ValueError, match=r"n_items=10"):
        scheme.build(catalog(10), vectors(9))
    bad = vectors(10)
    bad[3, 1] = np.inf
    with pytest.raises(SplitError, match="NaN/inf"):
        scheme.build(catalog(10), bad)
    with pytest.raises(ValueError, match="unknown splitter"):
        build_tree(vectors(10), 10, TreeConfig(splitter="nope"))
    with pytest.raises(ValueError, match="k must be >= 2"):
        build_tree(vectors(10), 10, TreeConfig(k=1))


def test_centroids_helper_matches_means_per_level():
    n = 80
    x = vectors(n)
    t = build_tree(x, n, TreeConfig(k=3))
    c = internal_centroids(x, t)
    for tok in range(n, t.vocab_size):
        lv = t.token_level[tok]
        np.testing.assert_allclose(c[tok - n], x[t.codes[:, lv] == tok].mean(0), rtol=1e-5, atol=1e-5)


def test_tree_build_bench_smoke(tmp_path):
    """The benchmark runs end to end on tiny sizes and records fast vs exact."""
    import json

    from typer.testing import CliRunner

    from gr_toolkit.cli.main import app

    out = tmp_path / "tb.json"
    res = CliRunner().invoke(app, ["bench", "tree-build", "--sizes", "300", "--dim", "8", "--k", "4",
                                   "--components", "10", "--exact-budget-s", "60", "--out", str(out)])
    assert res.exit_code == 0, res.output
    rec = json.loads(out.read_text())
    row = rec["sizes"][0]
    assert row["fast_tree"]["depth"] == tree_depth(300, 4)
    assert row["top_split"]["ss_ratio_fast_over_exact"] <= 1.05
    assert rec["command"] and rec["machine"]["cpu_count"] and out.with_suffix(".md").exists()
