"""``gr-toolkit index``: builds, validates options and vectors, writes atomically."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from gr_toolkit.cli.index import IndexBuildError, build_index, scheme_config
from gr_toolkit.cli.main import app
from gr_toolkit.config import ConfigError
from gr_toolkit.data.types import Catalog, Dataset, Examples
from gr_toolkit.identifiers.base import load_index

N = 60


def tiny_dataset(name: str = "tiny", **_) -> Dataset:
    cat = Catalog(name=name, ids=[f"sku{i}" for i in range(N)], fields={"title": [f"item {i}" for i in range(N)]})
    ex = Examples(kind="query", targets=[np.array([0]), np.array([1])], queries=["a", "b"])
    return Dataset(name=name, catalog=cat, train=ex, valid=ex, test=ex, protocol="given-split", bucketing="none")


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    """Route load_dataset to a 60-item catalog and write a matching vectors file."""
    import gr_toolkit.data.loaders as loaders

    monkeypatch.setattr(loaders, "load_dataset", lambda name, data_dir=None, seed=0, **o: tiny_dataset())
    vec = tmp_path / "vecs.npy"
    np.save(vec, np.random.default_rng(0).normal(size=(N, 8)).astype(np.float32))
    return vec


def run(*args):
    return CliRunner().invoke(app, ["index", *map(str, args)])


def test_index_builds_a_seater_tree_with_options(tiny, tmp_path):
    out = tmp_path / "idx"
    res = run("tiny", "--scheme", "seater", "--vectors", tiny, "--k", "4", "--splitter", "exact", "--out", out, "--report")
    assert res.exit_code == 0, res.output
    assert "vocab size" in res.output and "id length     3" in res.output
    idx = load_index(out, tiny_dataset().catalog)
    assert idx.n_items == N and idx.config["k"] == 4 and idx.config["splitter"] == "exact"
    assert (idx.lengths == 3).all() and (out / "tree_report.json").exists()


def test_index_reads_a_yaml_config_and_cli_overrides_win(tiny, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("scheme: seater\nk: 3\nseed: 5\n")
    out = tmp_path / "idx"
    res = run("tiny", "--config", cfg, "--vectors", tiny, "--seed", "7", "--out", out)
    assert res.exit_code == 0, res.output
    idx = load_index(out)
    assert idx.config["k"] == 3 and idx.config["seed"] == 7


def test_unknown_option_lists_valid_ones_and_writes_nothing(tiny, tmp_path):
    out = tmp_path / "idx"
    res = run("tiny", "--scheme", "seater", "--vectors", tiny, "--branches", "4", "--out", out)
    assert res.exit_code == 2
    assert "branches" in res.output and "exact_below" in res.output and "valid" in res.output
    assert not out.exists()


def test_bad_vectors_shape_is_a_clear_error_naming_the_file(tiny, tmp_path):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((N - 1, 8), dtype=np.float32))
    out = tmp_path / "idx"
    res = run("tiny", "--scheme", "seater", "--vectors", bad, "--out", out)
    assert res.exit_code == 2
    assert "bad.npy" in res.output and "59 rows" in res.output
    assert not out.exists()
    nan = tmp_path / "nan.npy"
    arr = np.zeros((N, 8), dtype=np.float32)
    arr[5, 1] = np.nan
    np.save(nan, arr)
    res = run("tiny", "--scheme", "seater", "--vectors", nan, "--out", out)
    assert res.exit_code == 2 and "nan.npy" in res.output and "non-finite" in res.output
    assert not out.exists()


def test_failed_build_leaves_no_output_directory(tiny, tmp_path):
    out = tmp_path / "idx"
    # random codes that cannot be distinct: the build raises, nothing is written
    res = run("tiny", "--scheme", "random", "--levels", "1", "--codebook-size", "8", "--out", out)
    assert res.exit_code == 2 and "do not fit" in res.output
    assert not out.exists()
    assert not any(p.name.startswith(".idx") for p in tmp_path.iterdir())


def test_unknown_scheme_and_existing_output(tiny, tmp_path):
    res = run("tiny", "--scheme", "nope", "--out", tmp_path / "x")
    assert res.exit_code == 2 and "seater" in res.output and "atomic" in res.output
    out = tmp_path / "idx"
    assert run("tiny", "--scheme", "atomic", "--out", out).exit_code == 0
    res = run("tiny", "--scheme", "atomic", "--out", out)
    assert res.exit_code == 2 and "--overwrite" in res.output
    assert run("tiny", "--scheme", "seater-random", "--out", out, "--overwrite").exit_code == 0
    assert load_index(out).scheme == "seater-random"


def test_build_index_function_without_the_cli():
    cat = tiny_dataset().catalog
    x = np.random.default_rng(1).normal(size=(N, 4)).astype(np.float32)
    idx = build_index(cat, x, "seater", {"k": "5", "exact_below": "0"})
    assert idx.config["k"] == 5 and idx.config["exact_below"] == 0
    with pytest.raises(IndexBuildError, match="needs item vectors"):
        build_index(cat, None, "seater")
    with pytest.raises(ConfigError, match="valid:"):
        scheme_config("seater", {"nope": 1})


def test_index_on_the_builtin_synthetic_dataset(tmp_path):
    """End to end through the real loader (2,000 synthetic items), no vectors needed."""
    out = tmp_path / "rt"
    res = run("synthetic", "--scheme", "seater-random", "--k", "16", "--out", out)
    assert res.exit_code == 0, res.output
    idx = load_index(out)
    assert idx.n_items == 2000 and (idx.lengths == 3).all()


def test_show_options_lists_scheme_fields(tiny):
    res = run("tiny", "--scheme", "seater", "--show-options", "--k", "5")
    assert res.exit_code == 0, res.output
    assert "--k 5" in res.output and "--exact-below 1000" in res.output
