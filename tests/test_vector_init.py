import numpy as np
import pytest
import torch

from gr_toolkit.data.featurize import FeaturizerConfig, SourceFeaturizer
from gr_toolkit.data.synthetic import make_synthetic
from gr_toolkit.models.seater import SeaterConfig, SeaterModel
from gr_toolkit.models.vector_init import init_tokens_from_item_vectors, load_item_vectors, token_mean_vectors
from gr_toolkit.vectors.io import VectorError
from tests.seater_helpers import binary_tree_index


def test_token_vectors_are_the_means_of_the_items_under_them():
    idx = binary_tree_index(8)  # item i -> [8 + i // 4, 10 + i // 2, i]
    vec = np.arange(8 * 2, dtype=np.float32).reshape(8, 2)
    rows, has = token_mean_vectors(idx.codes, idx.vocab_size, vec)
    assert has.all()
    np.testing.assert_allclose(rows[:8], vec)  # leaves: the item itself
    np.testing.assert_allclose(rows[8], vec[:4].mean(0))  # left child of the root
    np.testing.assert_allclose(rows[13], vec[6:8].mean(0))  # last node of level 2
    padded = np.array([[0, 2], [1, -1]])  # variable length: padding is no token
    rows, has = token_mean_vectors(padded, 4, np.array([[1.0], [3.0]], dtype=np.float32))
    assert has.tolist() == [True, True, True, False] and rows[:3, 0].tolist() == [1.0, 3.0, 1.0]


@pytest.fixture(scope="module")
def model_and_index():
    ds = make_synthetic(seed=0, n_items=32, n_queries=20, n_events=120, n_users=40, kind="history")
    idx = binary_tree_index(32)
    fz = SourceFeaturizer(FeaturizerConfig()).fit(ds)
    return idx, fz


def test_init_keeps_the_geometry_of_the_vectors_and_the_init_scale(model_and_index):
    idx, fz = model_and_index
    torch.manual_seed(0)
    m = SeaterModel.build(idx, fz, SeaterConfig(d_model=8, heads=2, ffn=16))
    before = m.token_embeddings().detach().clone()
    vec = np.random.default_rng(0).normal(size=(32, 8)).astype(np.float32) * 50
    assert init_tokens_from_item_vectors(m, idx, vec) == idx.vocab_size
    table = m.token_embeddings().detach()
    leaves = table[:32].numpy()
    # leaves are the centred vectors up to one scale: same cosine geometry, same spread as the random init
    centred = vec - vec.mean(0)
    unit = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    unit_leaves = leaves / np.linalg.norm(leaves, axis=1, keepdims=True)
    np.testing.assert_allclose(unit_leaves @ unit_leaves.T, unit @ unit.T, atol=1e-5)
    assert float(table[:32].std()) == pytest.approx(float(before[: idx.vocab_size].std()), rel=1e-4)
    # BOS/EOS keep their random rows; the encoder's item embeddings are the shared leaves
    torch.testing.assert_close(table[idx.vocab_size:], before[idx.vocab_size:])
    assert m.share_items


def test_bad_vector_files_are_refused_with_the_problem_named(tmp_path):
    p = tmp_path / "v.npy"
    np.save(p, np.zeros((5, 4), dtype=np.float32))
    with pytest.raises(VectorError, match="v.npy: 5 rows but the catalog has 8 items"):
        load_item_vectors(p, 8, 4)
    with pytest.raises(VectorError, match="4-d vectors, but the model takes 8-d item vectors"):
        load_item_vectors(p, 5, 8)
    bad = np.zeros((5, 4), dtype=np.float32)
    bad[3, 1] = np.nan
    np.save(p, bad)
    with pytest.raises(VectorError, match="1 non-finite value.*row 3, column 1"):
        load_item_vectors(p, 5, 4)
    with pytest.raises(VectorError, match="not found"):
        load_item_vectors(tmp_path / "missing.npy", 5, 4)
