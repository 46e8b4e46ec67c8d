import json

import pytest
from typer.testing import CliRunner

from gr_toolkit.cli.main import app
from gr_toolkit.data.loaders import load_dataset
from tests.seater_helpers import digit_tree_index, tiny_catalog

FAST = ["--epochs", "1", "--max_steps_per_epoch", "2", "--eval_max_examples", "40", "--eval_beam", "5",
        "--d_model", "16", "--ffn", "32", "--progress", "false", "--threads", "1", "--text_vocab", "400"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    ds = load_dataset("synthetic")
    digit_tree_index(ds.catalog, k=8).save(tmp / "idx")
    res = CliRunner().invoke(app, ["train", "synthetic", "--index", str(tmp / "idx"), "--out", str(tmp / "run"),
                                   "--losses", "gen,align,rank", *FAST])
    assert res.exit_code == 0, res.output
    return tmp, res.output


def test_train_writes_a_run(trained):
    tmp, output = trained
    assert "best epoch 1" in output
    man = json.loads((tmp / "run" / "manifest.json").read_text())
    assert man["status"] == "finished" and man["train_config"]["losses"] == "gen,align,rank"
    assert man["model_config"]["d_model"] == 16 and man["train_config"]["max_steps_per_epoch"] == 2
    assert (tmp / "run" / "model.safetensors").exists() and (tmp / "run" / "index" / "manifest.json").exists()


def test_eval_writes_the_result_file(trained, monkeypatch):
    tmp, _ = trained
    out = tmp / "res" / "synthetic__seater.json"
    args = ["eval", "synthetic", "--run", str(tmp / "run"), "--k", "1,5", "--beam", "5", "--out", str(out)]
    monkeypatch.setattr("sys.argv", ["/usr/bin/gr-toolkit", *args])
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    rec = json.loads(out.read_text())
    for key in ("dataset", "protocol", "split", "method", "seed", "bucketing", "n_examples", "metrics",
                "train_seconds", "device", "command"):
        assert key in rec
    assert rec["split"] == "test" and rec["method"] == "seater" and rec["bucketing"] == "traffic"
    assert set(rec["metrics"]) == {"all", "head", "torso", "tail"}
    assert rec["metrics"]["all"]["n"] == rec["n_examples"] == len(load_dataset("synthetic").test)
    assert 0 <= rec["metrics"]["all"]["recall@5"] <= 1
    assert rec["command"].startswith("gr-toolkit eval synthetic --run ")
    assert "| head |" in res.output


def test_search_prints_items(trained):
    tmp, _ = trained
    res = CliRunner().invoke(app, ["search", "--run", str(tmp / "run"), "red running shoes", "--top", "3",
                                   "--beam", "5"])
    assert res.exit_code == 0, res.output
    ds = load_dataset("synthetic")
    lines = [ln for ln in res.output.splitlines() if ln.strip()[:1].isdigit()]
    assert len(lines) == 3
    for ln in lines:
        ext = ln.split()[1]
        assert ds.catalog.has(ext)


def test_clear_errors(trained, tmp_path):
    tmp, _ = trained
    runner = CliRunner()
    # index built for another catalog
    tiny = digit_tree_index(tiny_catalog(8), k=2)
    tiny.save(tmp_path / "other_idx")
    res = runner.invoke(app, ["train", "synthetic", "--index", str(tmp_path / "other_idx"), "--out",
                              str(tmp_path / "r"), *FAST])
    assert res.exit_code == 2 and "catalog" in res.output
    # unknown option names the valid ones
    res = runner.invoke(app, ["train", "synthetic", "--index", str(tmp / "idx"), "--out", str(tmp_path / "r2"),
                              "--no_such_option", "3"])
    assert res.exit_code == 2 and "unknown option 'no_such_option'" in res.output
    # missing run directory
    res = runner.invoke(app, ["eval", "synthetic", "--run", str(tmp_path / "missing"), "--out", str(tmp_path / "x.json")])
    assert res.exit_code == 2 and "does not exist" in res.output
    # a run evaluated on another dataset's catalog
    res = runner.invoke(app, ["eval", "synthetic-seq", "--run", str(tmp / "run"), "--out", str(tmp_path / "x.json")])
    assert res.exit_code == 2
    assert not (tmp_path / "x.json").exists()
