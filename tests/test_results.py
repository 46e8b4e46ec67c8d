import json

import numpy as np
import torch

from gr_toolkit.evaluation.results import (
    bucket_table,
    json_default,
    markdown_table,
    result_record,
    write_result,
)


def _record(method="seater"):
    return result_record(
        dataset="toy", protocol="query-split", split="test", method=method, seed=0, bucketing="traffic",
        n_examples=3, metrics={"all": {"n": 3, "recall@10": 0.5}, "head": {"n": 1, "recall@10": 1.0}},
        train_seconds=1.23456, device="cpu:x86_64", command="gr-toolkit eval toy",
    )


def test_json_default_handles_scalars_and_arrays():
    payload = {"a": np.float32(0.5), "b": np.arange(3), "c": torch.tensor([[1, 2]]), "d": torch.tensor(7)}
    assert json.loads(json.dumps(payload, default=json_default)) == {"a": 0.5, "b": [0, 1, 2], "c": [[1, 2]], "d": 7}


def test_result_file_has_the_design_fields(tmp_path):
    path = write_result({**_record(), "curve": np.array([0.1, 0.2])}, tmp_path)
    assert path.name == "toy__seater.json"
    data = json.loads(path.read_text())
    for key in ("dataset", "protocol", "split", "method", "seed", "bucketing", "n_examples", "metrics",
                "train_seconds", "device", "command"):
        assert key in data
    assert data["train_seconds"] == 1.235 and data["curve"] == [0.1, 0.2]


def test_tables_show_missing_buckets_as_dashes():
    md = markdown_table([_record("a"), _record("b")], ["recall@10"])
    assert "| a | 0.5000 | 1.0000 | 3 | 1.2350 |" in md
    bt = bucket_table(_record()["metrics"], ["recall@10", "ndcg@10"])
    assert "| head | 1 | 1.0000 | – |" in bt
