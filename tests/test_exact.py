import numpy as np
import pytest
import torch

from gr_toolkit.data.types import Catalog
from gr_toolkit.decoding.beam_search import beam_search
from gr_toolkit.decoding.exact import exact_scores, exact_topk
from gr_toolkit.identifiers.codes import CodeIndex
from tests.fakes import TinyGRURetriever, random_batch
from tests.test_trie import random_codes


def _index(codes, lengths, vocab):
    return CodeIndex(
        scheme="test",
        codes=codes,
        lengths=lengths,
        vocab_size=vocab,
        token_parent=np.full(vocab, -1),
        token_level=np.zeros(vocab, dtype=np.int64),
        catalog_fingerprint=Catalog("c", [f"i{i}" for i in range(len(codes))]).fingerprint(),
    )


def _random_tree(seed, k=3, depth=3, n=20):
    perm = np.random.default_rng(seed).permutation(k**depth)[:n]
    # every tree node its own token (SEATER style): token = level * k**depth + prefix value
    prefix = np.stack([perm // k ** (depth - 1 - j) for j in range(depth)], 1)
    return prefix + np.arange(depth) * k**depth, np.full(n, depth), depth * k**depth


@pytest.mark.parametrize("kind", ["tree", "variable"])
@pytest.mark.parametrize("normalize", ["allowed", "full"])
def test_beam_covering_all_items_equals_exact_topk(kind, normalize):
    if kind == "tree":
        codes, lengths, vocab = _random_tree(0)
    else:
        codes, lengths = random_codes(11, True, n_max=30)
        vocab = 10
    index = _index(codes, lengths, vocab)
    model = TinyGRURetriever(source_vocab=50, vocab_size=vocab, dim=12, seed=1)
    batch = random_batch(4, seed=2)
    n = index.n_items
    with torch.inference_mode():
        beams = beam_search(model, index.constraint(), batch, beam_size=n + 2, normalize=normalize)
    ranked = index.rank(beams, top_k=n)
    items, scores = exact_topk(model, index, batch, k=n, normalize=normalize, chunk_items=7)
    torch.testing.assert_close(ranked.scores, scores, rtol=1e-4, atol=1e-4)
    assert torch.equal(ranked.items, items)
    if normalize == "allowed":  # children-only softmax: the item distribution sums to one
        torch.testing.assert_close(scores.exp().sum(1), torch.ones(4), rtol=1e-4, atol=1e-4)


def test_small_beam_finds_items_whose_exact_scores_match():
    codes, lengths, vocab = _random_tree(3, k=4, depth=3, n=50)
    index = _index(codes, lengths, vocab)
    model = TinyGRURetriever(source_vocab=50, vocab_size=vocab, dim=12, seed=4)
    batch = random_batch(3, seed=5)
    exact = exact_scores(model, index, batch)
    beams = beam_search(model, index.constraint(), batch, beam_size=5)
    ranked = index.rank(beams, top_k=5)
    torch.testing.assert_close(ranked.scores, exact.gather(1, ranked.items), rtol=1e-4, atol=1e-4)


def test_raw_codes_need_bos():
    with pytest.raises(ValueError, match="bos_id"):
        exact_scores(TinyGRURetriever(50, 4), (np.array([[0], [1]]), np.array([1, 1])), random_batch(1))


def test_real_seater_model_beam_equals_exact_when_beam_covers_all_items():
    """The cached incremental ``step`` of SeaterModel must agree with its teacher-forced ``decode``."""
    seater = pytest.importorskip("gr_toolkit.models.seater")
    codes, lengths, vocab = _random_tree(5, k=3, depth=3, n=20)
    index = _index(codes, lengths, vocab)
    torch.manual_seed(0)
    cfg = seater.SeaterConfig(layers=1, d_model=16, heads=2, ffn=32, dropout=0.0, max_history=6)
    model = seater.SeaterModel(cfg, decoder_vocab_size=index.decoder_vocab_size, n_items=20, source_kind="history").eval()
    batch = random_batch(3, source_vocab=20, seed=6)
    with torch.inference_mode():
        beams = beam_search(model, index.constraint(), batch, beam_size=20)
    ranked = index.rank(beams, top_k=20)
    items, scores = exact_topk(model, index, batch, k=20)
    torch.testing.assert_close(ranked.scores, scores, rtol=1e-4, atol=1e-4)
    assert torch.equal(ranked.items, items)
