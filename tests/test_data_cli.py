"""``gr-toolkit data stats`` / ``data list`` through typer's test runner."""

from __future__ import annotations

import pytest
from rich.console import Console
from typer.testing import CliRunner

from gr_toolkit.cli import data as data_cli
from gr_toolkit.cli.data import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    # A fixed width so table cells are not wrapped differently on different terminals.
    monkeypatch.setattr(data_cli, "console", Console(width=200))


def test_stats_synthetic_with_loader_options():
    res = runner.invoke(app, ["stats", "synthetic", "--n-items", "120", "--n-queries", "300", "--n-events", "2000"])
    assert res.exit_code == 0, res.output
    assert "log-split" in res.output and "bucketing traffic" in res.output
    assert "items: 120" in res.output
    for word in ("train", "valid", "test", "head", "torso", "tail", "notes"):
        assert word in res.output


def test_stats_history_kind():
    res = runner.invoke(app, ["stats", "synthetic-seq", "--n-items", "100", "--n-users", "60"])
    assert res.exit_code == 0, res.output
    assert "leave-one-out" in res.output and "proxy:target-popularity" in res.output and "users" in res.output


def test_unknown_dataset_lists_valid_names():
    res = runner.invoke(app, ["stats", "nosuch"])
    assert res.exit_code == 2
    assert "unknown dataset 'nosuch'" in res.output and "homedepot" in res.output and "jsonl:PATH" in res.output


def test_missing_data_dir_says_what_was_tried(tmp_path):
    res = runner.invoke(app, ["stats", "beauty", "--data-dir", str(tmp_path)])
    assert res.exit_code == 2
    out = " ".join(res.output.split())
    assert "amazon_beauty" in out and "GR_DATA_DIR" in out and "--data-dir" in out


def test_bad_option_is_named():
    res = runner.invoke(app, ["stats", "synthetic", "--n-itemz", "5"])
    assert res.exit_code == 2 and "n_itemz" in res.output


def test_list():
    res = runner.invoke(app, ["list"])
    assert res.exit_code == 0 and "esci:PATH" in res.output and "--max-history" in res.output
