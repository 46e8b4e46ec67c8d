import numpy as np
import pytest
import torch

from gr_toolkit.artifacts import ArtifactError
from gr_toolkit.data.types import Catalog
from gr_toolkit.identifiers.base import load_index
from gr_toolkit.identifiers.codes import CodeIndex


def _index(codes, lengths, vocab=6, **kw):
    return CodeIndex(
        scheme="test",
        codes=np.array(codes),
        lengths=np.array(lengths),
        vocab_size=vocab,
        token_parent=np.full(vocab, -1),
        token_level=np.zeros(vocab, dtype=np.int64),
        catalog_fingerprint=Catalog("c", [f"i{i}" for i in range(len(codes))]).fingerprint(),
        **kw,
    )


def test_duplicate_codes_are_rejected():
    with pytest.raises(ArtifactError, match="share an identifier"):
        _index([[0, 1], [0, 1], [1, 2]], [2, 2, 2])


def test_out_of_range_and_bad_padding_are_rejected():
    with pytest.raises(ArtifactError, match="outside 0..5"):
        _index([[0, 9], [0, 1]], [2, 2])
    with pytest.raises(ArtifactError, match="padded with -1"):
        _index([[0, 1], [0, 3]], [2, 1])


def test_decoder_targets_append_eos_only_for_variable_length():
    eq = _index([[0, 1], [0, 2]], [2, 2])
    assert eq.decoder_targets([1, 0]).tolist() == [[0, 2], [0, 1]]
    var = _index([[0, 1], [0, -1]], [2, 1])
    assert var.variable_length
    eos = var.eos_id
    assert var.decoder_targets([0, 1]).tolist() == [[0, 1, eos], [0, eos, -1]]


def test_save_load_round_trip_and_catalog_check(tmp_path):
    idx = _index([[0, 1], [0, 2], [3, 4]], [2, 2, 2], leaf_is_item=True, extras={"sizes": np.array([2, 1])})
    idx.save(tmp_path / "idx")
    cat = Catalog("c", ["i0", "i1", "i2"])
    back = load_index(tmp_path / "idx", catalog=cat)
    assert isinstance(back, CodeIndex) and back.leaf_is_item
    np.testing.assert_array_equal(back.codes, idx.codes)
    np.testing.assert_array_equal(back.extras["sizes"], [2, 1])
    with pytest.raises(ArtifactError, match="different items or order"):
        load_index(tmp_path / "idx", catalog=Catalog("c", ["i2", "i1", "i0"]))


def test_rank_orders_alive_beams_and_pads():
    from gr_toolkit.identifiers.base import BeamOutput

    idx = _index([[0, 1], [0, 2], [3, 4]], [2, 2, 2])
    cons = idx.constraint()
    # Walk two beams to items 1 and 2, one dropped beam.
    s = cons.start(3)
    s = cons.advance(s, torch.tensor([0, 3, 0]))
    s = cons.advance(s, torch.tensor([2, 4, 1]))
    beams = BeamOutput(
        tokens=torch.zeros(1, 3, 2, dtype=torch.long),
        scores=torch.tensor([[-1.0, -0.5, -0.1]]),
        states=s,
        alive=torch.tensor([[True, True, False]]),
    )
    out = idx.rank(beams, top_k=4)
    assert out.items.tolist() == [[2, 1, -1, -1]]
