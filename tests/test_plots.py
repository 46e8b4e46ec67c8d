import pytest

from gr_toolkit.evaluation.plots import bucket_bar_chart


def _rec(method, r10, buckets=("all", "head", "torso", "tail")):
    return {"dataset": "toy", "method": method, "bucketing": "traffic",
            "metrics": {b: {"recall@10": r10, "n": 3} for b in buckets}}


def test_bucket_bar_chart_writes_png(tmp_path):
    out = bucket_bar_chart([_rec("a", 0.5), _rec("b", 0.25, buckets=("all",))], "recall@10", tmp_path / "sub" / "p.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


def test_bucket_bar_chart_rejects_empty_records(tmp_path):
    with pytest.raises(ValueError, match="no result records"):
        bucket_bar_chart([], "recall@10", tmp_path / "p.png")
    assert not (tmp_path / "p.png").exists()
