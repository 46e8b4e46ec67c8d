import json

import numpy as np
import pytest

from gr_toolkit.config import ConfigError
from gr_toolkit.data.types import Catalog
from gr_toolkit.identifiers.base import SCHEMES, load_index
from gr_toolkit.identifiers.rq import ResidualQuantizationScheme, RQConfig, codebook_for


def _catalog(n):
    return Catalog("c", [f"i{i}" for i in range(n)])


def _vectors(n, d=16, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def _build(x, **cfg):
    return ResidualQuantizationScheme(RQConfig(**cfg)).build(_catalog(len(x)), x)


def test_registered_under_rq():
    assert SCHEMES.get("rq") is ResidualQuantizationScheme


def test_duplicates_get_disambiguation_tokens_and_codes_are_unique():
    base = _vectors(30)
    x = np.repeat(base, 4, axis=0)  # every vector 4 times: all of them collide on every level
    idx = _build(x, levels=2, codebook=8)
    assert idx.meta_extra["diagnostics_before"]["collision_rate"] == 1.0
    # two base vectors may also share a code: the disambiguation level is as wide as the largest group
    assert idx.meta_extra["n_disambig"] == idx.meta_extra["diagnostics_before"]["max_collision_group"] >= 4
    assert (idx.lengths == 3).all()  # fixed length: 2 levels + disambiguation token for every item
    assert len(np.unique(idx.codes, axis=0)) == len(x)
    # the four copies of a vector share levels 0-1 and differ only in the last token (0..3)
    d_off = idx.meta_extra["level_offsets"][2]
    assert len(set(idx.codes[:4, 2] - d_off)) == 4 and (idx.codes[:, 2] >= d_off).all()
    assert (idx.codes[:4, :2] == idx.codes[0, :2]).all()


def test_per_level_codebooks_respected_and_token_ranges():
    x = _vectors(300)
    idx = _build(x, levels=3, codebook_sizes=[4, 8, 3])
    raw = idx.extras["rq_codes"]
    assert raw.max(axis=0).tolist() <= [3, 7, 2] and raw.min() >= 0
    off = idx.meta_extra["level_offsets"]
    assert off[:4] == [0, 4, 12, 15]
    for lvl, (lo, hi) in enumerate(zip(off[:3], off[1:4], strict=True)):
        assert ((idx.codes[:, lvl] >= lo) & (idx.codes[:, lvl] < hi)).all()
        assert (idx.token_level[lo:hi] == lvl).all()
    assert (idx.token_parent == -1).all()  # TIGER-style shared codebooks: no tree
    assert idx.extras["codebook_1"].shape == (8, 16)


def test_codebook_capped_by_distinct_points():
    idx = _build(_vectors(10), levels=2, codebook=256)
    assert idx.meta_extra["codebook_sizes"][0] == 10
    assert any("capped" in n for n in idx.meta_extra["notes"])
    assert codebook_for(413, 3) == 7 and codebook_for(54667, 3) == 38


def test_reconstruction_error_decreases_with_levels():
    idx = _build(_vectors(500), levels=4, codebook=8)
    mse = idx.meta_extra["recon_mse"]
    assert all(b < a for a, b in zip(mse, mse[1:], strict=False))
    assert mse[0] < 1.0  # vectors are normalised: the zero code would have error 1


def test_seeded_builds_are_identical():
    x = _vectors(200)
    a, b = _build(x, codebook=8, seed=3), _build(x, codebook=8, seed=3)
    np.testing.assert_array_equal(a.codes, b.codes)


def test_tokens_are_prefixes_gives_a_real_tree():
    x = _vectors(300)
    idx = _build(x, levels=3, codebook=6, tokens_are_prefixes=True)
    c = idx.codes
    assert (idx.token_parent[c[:, 0]] == -1).all()
    for p in range(1, c.shape[1]):
        assert (idx.token_parent[c[:, p]] == c[:, p - 1]).all()
        assert (idx.token_level[c[:, p]] == p).all()
    n_prefixes = sum(len(np.unique(c[:, : p + 1], axis=0)) for p in range(c.shape[1]))
    assert idx.vocab_size == n_prefixes
    # same partition of items as the per-level vocabulary
    flat = _build(x, levels=3, codebook=6)
    for p in range(c.shape[1]):
        assert len(np.unique(c[:, : p + 1], axis=0)) == len(np.unique(flat.codes[:, : p + 1], axis=0))


@pytest.mark.parametrize(
    "cfg, match",
    [
        ({"codebook": 1}, "codebook needs >= 2"),
        ({"levels": 0}, "levels must be >= 1"),
        ({"method": "pq"}, "method must be"),
        ({"prune": "half"}, "prune must be one of"),
        ({"levels": 2, "prune": "drop-level"}, "no middle level"),
        ({"codebook_sizes": [4, 4]}, "2 entries for levels=3"),
    ],
)
def test_config_errors_are_clear(cfg, match):
    with pytest.raises(ConfigError, match=match):
        _build(_vectors(20), **cfg)


def test_bad_vectors_are_rejected():
    x = _vectors(20)
    x[7, 3] = np.nan
    with pytest.raises(ConfigError, match="NaN/inf in 1 row.*first item 7"):
        _build(x, codebook=4)
    with pytest.raises(ConfigError, match="needs item vectors"):
        ResidualQuantizationScheme().build(_catalog(3), None)
    with pytest.raises(ConfigError, match=r"\[n_items=5, dim\]"):
        ResidualQuantizationScheme().build(_catalog(5), _vectors(4))


def test_rq_vae_trains_and_gives_unique_codes():
    x = _vectors(256, d=12)
    idx = _build(x, levels=2, codebook=8, method="vae", vae_epochs=4, vae_hidden=32, vae_latent=8, device="cpu")
    loss = idx.meta_extra["train_history"]["loss"]
    assert len(loss) == 4 and loss[-1] < loss[0]
    assert len(idx.meta_extra["train_history"]["dead_codes_reset"]) == 4
    assert len(np.unique(idx.codes, axis=0)) == 256
    assert idx.extras["rq_codes"].max(axis=0).tolist() <= [7, 7]


def test_save_load_and_report(tmp_path):
    x = _vectors(300)
    idx = _build(x, levels=3, codebook=6)
    idx.save(tmp_path / "idx")
    back = load_index(tmp_path / "idx", catalog=_catalog(300))
    np.testing.assert_array_equal(back.codes, idx.codes)
    out = ResidualQuantizationScheme().report(back, tmp_path / "rep")
    data = json.loads(out["json"].read_text())
    assert list(data["tables"]) == ["before pruning"]
    assert data["tables"]["before pruning"]["levels"][0]["codebook"] == 6
    assert out["png"].read_bytes()[:4] == b"\x89PNG"
