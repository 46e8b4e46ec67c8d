"""The main job (`gr-toolkit demo`, what scripts/demo.sh runs) end to end on a small synthetic catalog."""

import json

import pytest
from typer.testing import CliRunner

from gr_toolkit.cli.main import app


@pytest.mark.slow
def test_demo_indexes_trains_retrieves_and_reports_by_bucket(tmp_path):
    out = tmp_path / "demo"
    res = CliRunner().invoke(app, ["demo", "--out", str(out), "--n_items", "300", "--epochs", "1", "--beam", "10",
                                   "--ks", "1,10", "--bm25", "false"])
    assert res.exit_code == 0, res.output
    recs = {json.loads(p.read_text())["method"]: json.loads(p.read_text()) for p in (out / "results").glob("*.json")}
    assert {"seater", "popularity"} <= set(recs)
    seater = recs["seater"]["metrics"]
    assert set(seater) == {"all", "head", "torso", "tail"}
    assert seater["all"]["recall@10"] > recs["popularity"]["metrics"]["all"]["recall@10"]  # it learned something
    assert (out / "results.md").exists() and (out / "recall10_by_bucket.png").stat().st_size > 0
