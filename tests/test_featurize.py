"""SentencePiece tokenizer and the source featurizer (histories and queries)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gr_toolkit.artifacts import ArtifactError
from gr_toolkit.data.featurize import SourceFeaturizer
from gr_toolkit.data.synthetic import make_synthetic
from gr_toolkit.data.types import DataError, Examples
from gr_toolkit.text.tokenizer import PAD_ID, SentencePieceTokenizer, TokenizerError

CORPUS = [f"{c} {b} running shoes size {s}" for c in ("red", "blue", "green", "black") for b in ("nike", "adidas", "puma")
          for s in range(5, 12)] + ["gears of war 3", "halo reach xbox 360", "stainless steel frying pan"] * 5


@pytest.fixture(scope="module")
def tok():
    return SentencePieceTokenizer.train(CORPUS, vocab_size=120)


def test_tokenizer_deterministic_and_roundtrip(tok, tmp_path):
    again = SentencePieceTokenizer.train(CORPUS, vocab_size=120)
    assert again.model_proto == tok.model_proto
    path = tok.save(tmp_path / "tok")
    assert path.name == "tok.model"
    loaded = SentencePieceTokenizer.load(path)
    assert loaded.pieces == tok.pieces and loaded.vocab_size == tok.vocab_size
    assert tok.pieces[:4] == ["<pad>", "<unk>", "<s>", "</s>"] and tok.pad_id == PAD_ID == 0


def test_encode_batch_padding_mask_and_truncation(tok):
    ids, mask = tok.encode_batch(["red nike running shoes", "", "halo"], max_len=4)
    assert ids.shape == mask.shape and ids.shape[0] == 3 and ids.shape[1] <= 4
    assert ids.dtype == np.int64 and mask.dtype == bool
    assert not mask[1].any() and (ids[1] == PAD_ID).all()
    assert (ids[~mask] == PAD_ID).all() and (ids[mask] >= 4).all()  # no specials inside text
    full = tok.encode("red nike running shoes")
    assert ids[0][mask[0]].tolist() == full[:4]
    assert tok.decode(tok.encode("red nike running shoes")) == "red nike running shoes"
    ids2, mask2 = tok.encode_batch(["halo reach", "gears of war 3"], max_len=64)
    assert tok.decode_batch(ids2, mask2) == ["halo reach", "gears of war 3"]


def test_case_folding(tok):
    assert tok.encode("Red NIKE") == tok.encode("red nike")


def test_vocab_capped_with_note_and_bad_inputs():
    small = SentencePieceTokenizer.train(["ab ab ab", "ba ba"], vocab_size=5000)
    assert small.vocab_size < 5000 and any("capped" in n for n in small.notes)
    with pytest.raises(TokenizerError, match="empty corpus"):
        SentencePieceTokenizer.train(["", "  "], vocab_size=100)
    with pytest.raises(TokenizerError, match="too small"):
        SentencePieceTokenizer.train(CORPUS, vocab_size=3)
    with pytest.raises(TokenizerError, match="does not exist"):
        SentencePieceTokenizer.load("/nonexistent/tok.model")


def test_history_featurizer(tiny_history_dataset, tmp_path):
    d = tiny_history_dataset
    fz = SourceFeaturizer(max_history=5).fit(d)
    assert fz.vocab_size == len(d.catalog)
    ex = Examples(kind="history", targets=[np.array([0])] * 3,
                  histories=[np.array([3, 4, 5, 6, 7, 8, 9]), np.array([1]), np.array([], dtype=np.int64)])
    b = fz.batch(ex)
    assert b.kind == "history" and b.tokens.dtype == torch.int64 and b.mask.dtype == torch.bool
    # last 5 items, oldest first, left-aligned; padding 0 with mask False
    assert b.tokens.tolist() == [[5, 6, 7, 8, 9], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]]
    assert b.mask.tolist() == [[True] * 5, [True] + [False] * 4, [False] * 5]
    sub = fz.batch(d.test, [2, 0])
    assert len(sub) == 2 and sub.tokens[1][sub.mask[1]].tolist() == d.test.histories[0][-5:].tolist()
    fz.save(tmp_path / "fz")
    again = SourceFeaturizer.load(tmp_path / "fz", catalog=d.catalog)
    assert torch.equal(again.batch(d.test, [0, 1]).tokens, fz.batch(d.test, [0, 1]).tokens)


def test_history_ids_out_of_catalog_raise(tiny_history_dataset):
    fz = SourceFeaturizer().fit(tiny_history_dataset)
    bad = Examples(kind="history", targets=[np.array([0])], histories=[np.array([1, 10_000])])
    with pytest.raises(DataError, match="10000"):
        fz.batch(bad)


def test_query_featurizer_roundtrip(tiny_query_dataset, tmp_path):
    d = tiny_query_dataset
    fz = SourceFeaturizer(vocab_size=500, max_query_len=6).fit(d)
    assert 8 < fz.vocab_size <= 500
    b = fz.batch(d.test, np.arange(10))
    assert b.kind == "query" and b.tokens.shape[0] == 10 and b.tokens.shape[1] <= 6
    assert (b.tokens[~b.mask] == 0).all() and b.mask[:, 0].all()
    assert int(b.tokens.max()) < fz.vocab_size
    fz.save(tmp_path / "fz")
    man = json.loads((tmp_path / "fz" / "manifest.json").read_text())
    assert man["kind"] == "query" and (tmp_path / "fz" / man["tokenizer"]).exists()
    again = SourceFeaturizer.load(tmp_path / "fz", catalog=d.catalog)
    assert torch.equal(again.batch(d.test, np.arange(10)).tokens, b.tokens)
    assert torch.equal(again.encode_text(["red shoes"]).tokens, fz.encode_text(["red shoes"]).tokens)


def test_featurizer_refits_identically(tiny_query_dataset):
    a = SourceFeaturizer(vocab_size=300).fit(tiny_query_dataset)
    b = SourceFeaturizer(vocab_size=300).fit(tiny_query_dataset)
    assert a.tokenizer.model_proto == b.tokenizer.model_proto


def test_featurizer_errors(tiny_query_dataset, tiny_history_dataset, tmp_path):
    with pytest.raises(RuntimeError, match="not fitted"):
        SourceFeaturizer().batch(tiny_query_dataset.test, [0])
    with pytest.raises(TypeError, match="max_hist"):
        SourceFeaturizer(max_hist=3)
    fz = SourceFeaturizer(vocab_size=200).fit(tiny_query_dataset)
    with pytest.raises(DataError, match="history"):
        fz.batch(tiny_history_dataset.test, [0])
    fz.save(tmp_path / "fz")
    other = make_synthetic(seed=5, n_items=50, n_queries=100, n_events=300)
    with pytest.raises(ArtifactError, match="different catalog"):
        SourceFeaturizer.load(tmp_path / "fz", catalog=other.catalog)
    with pytest.raises(ArtifactError, match="manifest"):
        SourceFeaturizer.load(tmp_path / "nothing")
