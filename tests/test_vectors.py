import json

import numpy as np
import pytest

from gr_toolkit.data.types import Catalog
from gr_toolkit.vectors.io import VectorError, load_vectors, save_vectors, validate_vectors


def test_text_vectors_offline_normalised_and_semantic(monkeypatch):
    from gr_toolkit.vectors.text import TEXT_DIM, item_text_vectors

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cat = Catalog("t", ["a", "b", "c", "d"], fields={"title": [
        "cordless power drill with battery", "battery powered drill driver", "white ceiling paint", ""]})
    v = item_text_vectors(cat, field="title", batch_size=2, device="cpu")
    assert v.shape == (4, TEXT_DIM) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    sim = v @ v.T
    assert sim[0, 1] > sim[0, 2] + 0.2  # the two drills are far closer than drill vs paint
    # catalog order is kept although encoding sorts by length
    single = item_text_vectors(Catalog("s", ["c"], fields={"title": ["white ceiling paint"]}), field="title", device="cpu")
    np.testing.assert_allclose(single[0], v[2], atol=1e-5)


def test_cf_vectors_shape_and_training_signal(tiny_history_dataset):
    from gr_toolkit.vectors.cf import SASRecConfig, item_cf_vectors, sasrec_rank, train_sasrec

    ds = tiny_history_dataset
    cfg = SASRecConfig(dim=16, n_heads=1, n_layers=1, max_len=20, epochs=2, batch_size=128, loss="sampled",
                       num_negatives=64, device="cpu", verbose=False)
    vecs, meta = item_cf_vectors(ds, cfg, log=None)
    assert vecs.shape == (len(ds.catalog), 16) and np.isfinite(vecs).all()
    assert meta["model"] == "sasrec" and meta["best_epoch"] >= 1
    model = train_sasrec(ds, SASRecConfig(dim=16, n_heads=1, n_layers=1, max_len=20, epochs=1, loss="full", device="cpu", verbose=False), log=None)
    items, scores = sasrec_rank(model, ds.test, k=7, exclude_history=True)
    assert items.shape == (len(ds.test), 7) and (items >= 0).all() and (items < len(ds.catalog)).all()
    assert (np.diff(scores, axis=1) <= 1e-6).all()
    for h, row in zip(ds.test.histories[:20], items[:20], strict=True):
        assert not set(h.tolist()) & set(row.tolist())


def test_sasrec_save_load_round_trip_and_popularity_negatives(tiny_history_dataset, tmp_path):
    from gr_toolkit.artifacts import ArtifactError
    from gr_toolkit.vectors.cf import SASRecConfig, load_sasrec, sasrec_rank, save_sasrec, train_sasrec

    ds = tiny_history_dataset
    cfg = SASRecConfig(dim=8, n_heads=1, n_layers=1, epochs=1, loss="sampled", negative_sampling="popularity",
                       num_negatives=32, device="cpu", verbose=False)
    model = train_sasrec(ds, cfg, log=None)
    save_sasrec(model, tmp_path / "m", ds.catalog.fingerprint())
    back = load_sasrec(tmp_path / "m", ds.catalog.fingerprint(), device="cpu")
    np.testing.assert_array_equal(back.item_vectors(), model.item_vectors())
    np.testing.assert_array_equal(sasrec_rank(back, ds.test, k=5)[0], sasrec_rank(model, ds.test, k=5)[0])
    assert back.best_epoch == 1
    with pytest.raises(ArtifactError, match="trained on catalog"):
        load_sasrec(tmp_path / "m", "0" * 16)
    with pytest.raises(ValueError, match="negative_sampling"):
        train_sasrec(ds, SASRecConfig(epochs=1, negative_sampling="hard", verbose=False), log=None)


def test_training_sequences_rebuilds_prefix_examples():
    from gr_toolkit.data.types import Examples
    from gr_toolkit.vectors.cf import training_sequences

    # user u: items 1 2 3 4 as prefix examples with a history cap of 2; user v: one example
    ex = Examples("history", targets=[np.array([2]), np.array([3]), np.array([4]), np.array([9])],
                  histories=[np.array([1]), np.array([1, 2]), np.array([2, 3]), np.array([7, 8])],
                  keys=["u", "u", "u", "v"])
    seqs = training_sequences(ex)
    assert [s.tolist() for s in seqs] == [[1, 2, 3, 4], [7, 8, 9]]


def test_sequence_windows_make_every_item_a_target_once():
    from gr_toolkit.vectors.cf import sequence_windows

    seq = np.arange(10)
    wins = sequence_windows([seq, np.array([5])], width=4)
    assert [w.tolist() for w in wins] == [[6, 7, 8, 9], [3, 4, 5, 6], [0, 1, 2, 3]]
    targets = np.concatenate([w[1:] for w in wins])
    assert sorted(targets.tolist()) == list(range(1, 10))


def test_save_load_round_trip_and_sidecar(tmp_path):
    cat = Catalog("t", ["a", "b", "c"])
    v = np.arange(6, dtype=np.float64).reshape(3, 2)
    p = save_vectors(tmp_path / "v.npy", v, {"method": "text", "catalog_fingerprint": cat.fingerprint()})
    got = load_vectors(p, cat)
    assert got.dtype == np.float32 and got.shape == (3, 2)
    assert json.loads((tmp_path / "v.json").read_text())["method"] == "text"
    other = Catalog("o", ["c", "b", "a"])
    with pytest.raises(VectorError, match="fingerprint"):
        load_vectors(p, other)


def test_bad_vectors_give_clear_errors(tmp_path):
    cat = Catalog("t", ["a", "b", "c"])
    np.save(tmp_path / "short.npy", np.zeros((2, 4), np.float32))
    with pytest.raises(VectorError, match="2 rows but the catalog has 3 items"):
        load_vectors(tmp_path / "short.npy", cat)
    np.save(tmp_path / "flat.npy", np.zeros(3, np.float32))
    with pytest.raises(VectorError, match="2-d"):
        load_vectors(tmp_path / "flat.npy", cat)
    bad = np.zeros((3, 4), np.float32)
    bad[1, 2] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(VectorError, match="row 1, column 2"):
        load_vectors(tmp_path / "nan.npy", cat)
    np.save(tmp_path / "obj.npy", np.array([[1, "x"]], dtype=object), allow_pickle=True)
    with pytest.raises(VectorError, match="cannot be read"):
        load_vectors(tmp_path / "obj.npy")
    with pytest.raises(VectorError, match="not found"):
        load_vectors(tmp_path / "missing.npy")
    with pytest.raises(VectorError, match="dimension 0"):
        validate_vectors(np.zeros((3, 0)))
    with pytest.raises(VectorError, match=".npy"):
        save_vectors(tmp_path / "v.txt", np.zeros((1, 1)))
    assert not (tmp_path / "v.txt").exists()


def test_embed_cli_writes_npy_and_sidecar(tmp_path):
    from typer.testing import CliRunner

    from gr_toolkit.cli.main import app

    out = tmp_path / "syn_cf.npy"
    res = CliRunner().invoke(app, ["embed", "synthetic", "--method", "cf", "--out", str(out), "--epochs", "1",
                                   "--dim", "8", "--num-negatives", "16", "--n-buckets", "4096"])
    assert res.exit_code == 0, res.output
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["method"] == "cf" and meta["model"] == "dssm-item-tower" and meta["config"]["dim"] == 8
    v = load_vectors(out)
    assert v.shape == (meta["n_items"], 8)
    bad = CliRunner().invoke(app, ["embed", "synthetic", "--method", "cf", "--out", str(tmp_path / "x.npy"), "--no-such", "1"])
    assert bad.exit_code != 0 and "no_such" in str(bad.exception)
    assert not (tmp_path / "x.npy").exists()


def test_pca_reduce_keeps_the_main_directions():
    from gr_toolkit.vectors.reduce import pca_reduce

    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 6)) * np.array([5.0, 3.0, 1.0, 0.1, 0.1, 0.1])
    y = pca_reduce(x, 2)
    assert y.shape == (500, 2) and y.dtype == np.float32
    assert y[:, 0].var() > 20 > y[:, 1].var() > 7  # the 5-sd and 3-sd axes (variance 25, 9), in order
    assert np.allclose(y, pca_reduce(x, 2))  # deterministic, signs fixed
    with pytest.raises(ValueError, match="1 <= dim <= D"):
        pca_reduce(x, 7)
