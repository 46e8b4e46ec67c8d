import json

import pytest
import torch
import typer

from gr_toolkit.bench.hf_decode import command


def _run(tmp_path, **kw):
    args = dict(items=200, levels=2, codebook=16, beam=4, queries=2, batch=2, overhead_batch=2, source_len=6,
                source_vocab=50, models="t5,causal", repeats=1, threads=1, seed=0, device="cpu",
                out=tmp_path / "b.json")
    command(**{**args, **kw})
    return json.loads((tmp_path / "b.json").read_text())


def test_every_route_returns_only_valid_identifiers_and_the_same_top1(tmp_path):
    torch.set_num_threads(1)
    rec = _run(tmp_path)
    assert rec["device"].startswith("cpu") and rec["beam"] == 4
    for name in ("t5", "causal"):
        r = rec["results"][name]
        for route in r["routes"].values():
            assert route["returned_sequences"] > 0
            assert route["valid_sequences"] == route["returned_sequences"]
        assert r["top1_agreement"]["unified_vs_prefix_fn"] == 1.0
        assert r["routes"]["unified"]["speedup_vs_prefix_fn"] > 0


def test_cuda_without_a_gpu_is_refused(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(typer.BadParameter, match="CUDA is not available"):
        _run(tmp_path, device="cuda")
    assert not (tmp_path / "b.json").exists()
